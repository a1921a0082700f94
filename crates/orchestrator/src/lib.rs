//! Starts deployment executions for PENDING builds.
//!
//! The execution name is derived from the build, so starting the same build
//! twice is harmless: Step Functions answers `ExecutionAlreadyExists`, which
//! counts as started. PENDING -> IN_PROGRESS and the execution ARN are written
//! in one conditional write after the start.

use std::collections::BTreeSet;

use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use builddao::{Build, BuildStatus, BuildStore, StoreError, Transition};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tracing::{info, warn};

/// Step Functions' limit on execution names.
pub const MAX_EXECUTION_NAME: usize = 80;

/// How deployments run; read once at cold start.
#[derive(Debug, Clone)]
pub struct DeployPolicy {
    pub state_machine_arn: String,
    /// AWS region of the artifact bucket (for template URLs).
    pub region: String,
    /// Environments whose deployments wait for a person's approval.
    pub approval_envs: BTreeSet<String>,
    pub approval_timeout_seconds: u64,
    pub poll_interval_seconds: u64,
    /// Bound on every polling loop of the state machine.
    pub poll_max_attempts: u64,
}

impl DeployPolicy {
    /// How long a deployment may hold its stack's lock before another build
    /// may take it over: the longest the state machine can legitimately run.
    pub fn lock_seconds(&self) -> u64 {
        self.approval_timeout_seconds + 4 * self.poll_interval_seconds * self.poll_max_attempts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Step Functions refused for a reason that may pass (throttling, 5xx).
    #[error("starting execution {name} failed and may succeed on retry: {message}")]
    Retryable { name: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `start` did with a build.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// The execution runs and the build is IN_PROGRESS (or already beyond).
    Running {
        execution_arn: String,
        already_existed: bool,
    },
    /// Step Functions refused for good; the build was marked FAILED if it
    /// was still PENDING.
    Failed { reason: String },
}

pub struct Orchestrator {
    sfn: aws_sdk_sfn::Client,
    builds: BuildStore,
    policy: DeployPolicy,
}

impl Orchestrator {
    pub fn new(sfn: aws_sdk_sfn::Client, builds: BuildStore, policy: DeployPolicy) -> Self {
        Self {
            sfn,
            builds,
            policy,
        }
    }

    pub fn policy(&self) -> &DeployPolicy {
        &self.policy
    }

    /// Starts the deployment of a PENDING build.
    pub async fn start(&self, build: &Build) -> Result<Started, StartError> {
        let name = execution_name(build);
        let input = execution_input(build, &self.policy, time::OffsetDateTime::now_utc());
        let result = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.policy.state_machine_arn)
            .name(&name)
            .input(input.to_string())
            .send()
            .await;
        let (execution_arn, already_existed) = match result {
            Ok(out) => (out.execution_arn, false),
            Err(err) if error_code(&err) == Some("ExecutionAlreadyExists") => {
                (execution_arn(&self.policy.state_machine_arn, &name), true)
            }
            Err(err) if is_retryable(&err) => {
                return Err(StartError::Retryable {
                    name,
                    message: DisplayErrorContext(&err).to_string(),
                })
            }
            Err(err) => {
                let reason = format!(
                    "could not start deployment execution {name} on {}: {}",
                    self.policy.state_machine_arn,
                    DisplayErrorContext(&err)
                );
                let now = ledger::now_rfc3339();
                let outcome = self
                    .builds
                    .mark_failed(&build.key(), &[BuildStatus::Pending], &reason, &now)
                    .await?;
                warn!(build_id = %build.id(), %reason, ?outcome, "execution did not start");
                return Ok(Started::Failed { reason });
            }
        };
        let now = ledger::now_rfc3339();
        match self
            .builds
            .mark_started(&build.key(), &execution_arn, &now)
            .await?
        {
            Transition::Applied => {
                info!(build_id = %build.id(), %execution_arn, already_existed, "build IN_PROGRESS")
            }
            Transition::Refused { current } => info!(
                build_id = %build.id(),
                %execution_arn,
                current = ?current,
                "execution running; build already past PENDING"
            ),
        }
        Ok(Started::Running {
            execution_arn,
            already_existed,
        })
    }
}

/// `{repo}-{env}-{sk}` within Step Functions' 80 characters of
/// `[0-9A-Za-z_-]`. The sk is kept whole: it makes the name unique, and
/// holding only letters and digits ([`builddao::is_build_sk`]) it reads back
/// as the part after the last `-`.
pub fn execution_name(build: &Build) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let suffix = format!("-{}-{}", clean(&build.env), clean(&build.sk));
    let room = MAX_EXECUTION_NAME.saturating_sub(suffix.len());
    let repo: String = clean(&build.repo).chars().take(room).collect();
    let mut name = format!("{repo}{suffix}");
    name.truncate(MAX_EXECUTION_NAME);
    name
}

/// The ARN Step Functions gives an execution named `name`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Virtual-hosted S3 URL of the build's template, the form CloudFormation takes.
pub fn template_url(build: &Build, region: &str) -> String {
    let key = format!("{}cloudformation.template", build.artifact_prefix);
    let encoded: Vec<String> = key
        .split('/')
        .map(|segment| utf8_percent_encode(segment, KEY_SEGMENT).to_string())
        .collect();
    format!(
        "https://{}.s3.{region}.amazonaws.com/{}",
        build.artifact_bucket,
        encoded.join("/")
    )
}

/// The state machine's input (see docs/state-machine.md).
pub fn execution_input(build: &Build, policy: &DeployPolicy, now: time::OffsetDateTime) -> Value {
    let lock_expires = now + time::Duration::seconds(policy.lock_seconds() as i64);
    let parameters: Vec<Value> = build
        .parameters
        .iter()
        .map(|(k, v)| json!({"ParameterKey": k, "ParameterValue": v}))
        .collect();
    // An automatic rollback restores what was approved before: it waits for
    // no approval and no freeze window.
    let automatic_rollback = build.rollback.as_ref().is_some_and(|r| r.automatic);
    json!({
        "build": {"pk": build.pk, "sk": build.sk},
        "repo": build.repo,
        "env": build.env,
        "branch": build.branch,
        "version": build.version,
        "stack_name": build.stack_name,
        "change_set_name": format!("deployer-{}", build.sk),
        "template_url": template_url(build, &policy.region),
        "parameters": parameters,
        "template": {
            "bucket": build.artifact_bucket,
            "key": format!("{}cloudformation.template", build.artifact_prefix),
        },
        "automatic_rollback": automatic_rollback,
        "approval": {
            "required": policy.approval_envs.contains(&build.env) && !automatic_rollback,
            "timeout_seconds": policy.approval_timeout_seconds,
        },
        "poll": {
            "interval_seconds": policy.poll_interval_seconds,
            "max_attempts": policy.poll_max_attempts,
        },
        "lock": {"expires_at": lock_expires
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formatting a UTC time as RFC 3339 cannot fail")},
    })
}

fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || matches!(
                    service.err().code(),
                    Some("ThrottlingException" | "TooManyRequestsException" | "ServiceUnavailable")
                )
        }
        // No answer from the service at all: worth another try.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn build(repo: &str, branch: &str) -> Build {
        Build {
            pk: format!("{repo}/dev"),
            sk: "2KqFQ6jRk1aaaaaaaaaaaaaaaaa".into(),
            repo: repo.into(),
            env: "dev".into(),
            branch: branch.into(),
            version: "3.abcd".into(),
            build_number: 3,
            commit_hash: "abcd".into(),
            status: BuildStatus::Pending,
            stack_name: format!("dev-{repo}"),
            artifact_bucket: "artifacts".into(),
            artifact_prefix: format!("{repo}/{branch}/3.abcd/"),
            parameters: BTreeMap::from([("Greeting".into(), "hi".into())]),
            execution_arn: None,
            error_msg: None,
            no_changes: None,
            change_summary: None,
            approval_token: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            finished_at: None,
            uploaded_by: None,
            policy_warnings: Vec::new(),
            rollback: None,
        }
    }

    #[test]
    fn execution_names_fit_step_functions_rules_and_keep_the_build_id() {
        let long = "a".repeat(64);
        for repo in ["shop", long.as_str()] {
            let name = execution_name(&build(repo, "main"));
            assert!(name.len() <= MAX_EXECUTION_NAME, "{name}");
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(name.ends_with("-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa"), "{name}");
        }
        assert_eq!(
            execution_name(&build("shop", "main")),
            "shop-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa"
        );
    }

    #[test]
    fn execution_names_keep_todays_keys_whole_and_last() {
        let mut b = build(&"r".repeat(64), "main");
        b.sk = builddao::build_sk(1_800_000_000_123, u64::MAX, b"upload");
        let name = execution_name(&b);
        assert!(name.len() <= MAX_EXECUTION_NAME, "{name}");
        assert_eq!(name.rsplit('-').next(), Some(b.sk.as_str()), "{name}");
        assert!(name.ends_with(&format!("-dev-{}", b.sk)), "{name}");
    }

    #[test]
    fn execution_arn_is_derived_from_the_state_machine() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:dev-deployer",
                "x"
            ),
            "arn:aws:states:us-east-1:123456789012:execution:dev-deployer:x"
        );
    }

    #[test]
    fn template_url_encodes_branch_characters_but_keeps_slashes() {
        let url = template_url(&build("shop", "feature/a b"), "eu-west-1");
        assert_eq!(
            url,
            "https://artifacts.s3.eu-west-1.amazonaws.com/shop/feature/a%20b/3.abcd/cloudformation.template"
        );
    }
}
