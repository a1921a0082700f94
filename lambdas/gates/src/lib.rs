//! `gates`: the deployment state machine's gates (docs/state-machine.md,
//! "Gates"). The machine invokes this function with one request per gate:
//!
//! - `policy`, first: the template checked with CloudFormation Guard
//!   ([`policy`]);
//! - `window`, before the stack's lock: is the environment in a freeze
//!   window ([`window`]);
//! - `bake_plan` and `bake_check`, after the stack update: what to watch
//!   and whether it is healthy ([`bake`]);
//! - `rollback`, when a bake fails: a new build of the last good version
//!   ([`rollback`]).
//!
//! Answers are plain JSON the machine branches on. Errors the machine
//! should retry are reported as `GateUnavailable`, bad requests as
//! `GateRequestInvalid`.

pub mod bake;
pub mod config;
pub mod policy;
pub mod rollback;
pub mod window;

use std::sync::OnceLock;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use builddao::BuildStore;
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::Value;

pub use config::Config;

/// One request from the state machine, told apart by `gate`.
#[derive(Debug, Deserialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum Request {
    Policy(policy::PolicyRequest),
    Window(window::WindowRequest),
    BakePlan(bake::PlanRequest),
    BakeCheck(bake::CheckRequest),
    Rollback(rollback::RollbackRequest),
}

/// The gates' clients and configuration, made once per cold start.
pub struct Gates {
    pub config: Config,
    pub builds: BuildStore,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    /// The smoke checks' HTTP client: built by the first check, so the
    /// other gates never read the TLS roots.
    http: OnceLock<reqwest::Client>,
}

impl Gates {
    pub fn new(config: Config, aws: &aws_config::SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        Gates {
            builds: BuildStore::new(dynamodb.clone(), &config.builds_table),
            dynamodb,
            cloudformation: aws_sdk_cloudformation::Client::new(aws),
            cloudwatch: aws_sdk_cloudwatch::Client::new(aws),
            lambda: aws_sdk_lambda::Client::new(aws),
            s3: aws_sdk_s3::Client::new(aws),
            http: OnceLock::new(),
            config,
        }
    }

    /// The smoke checks' HTTP client, built on first use.
    pub fn http(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .timeout(bake::SMOKE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(self.http.get_or_init(|| client))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The request does not say what the gate needs.
    #[error("{0}")]
    Invalid(String),
    /// AWS answered with an error that may pass.
    #[error("{operation} failed: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
}

impl GateError {
    /// An AWS error as the build's history shows it: the service's code
    /// and message, or (when no answer came) what went wrong on the way.
    pub fn aws<E, R>(
        operation: &'static str,
        err: aws_sdk_cloudformation::error::SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let message = match err.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or("no message")
            ),
            None => aws_sdk_cloudformation::error::DisplayErrorContext(&err).to_string(),
        };
        GateError::Unavailable { operation, message }
    }

    pub fn store(err: builddao::StoreError) -> Self {
        GateError::Unavailable {
            operation: "builds table",
            message: err.to_string(),
        }
    }
}

impl From<GateError> for Diagnostic {
    fn from(err: GateError) -> Self {
        let error_type = match err {
            GateError::Invalid(_) => "GateRequestInvalid",
            GateError::Unavailable { .. } => "GateUnavailable",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: err.to_string(),
        }
    }
}

/// CloudFormation's answer for a stack that does not exist (yet).
pub(crate) fn is_missing_stack<E: ProvideErrorMetadata, R>(
    err: &aws_sdk_cloudformation::error::SdkError<E, R>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.message())
        .is_some_and(|m| m.contains("does not exist"))
}

/// Answers one request from the state machine.
pub async fn handle(gates: &Gates, event: Value) -> Result<Value, GateError> {
    let request: Request = serde_json::from_value(event)
        .map_err(|err| GateError::Invalid(format!("gates request: {err}")))?;
    let answer = match request {
        Request::Policy(request) => serde_json::to_value(policy::check(gates, &request).await?),
        Request::Window(request) => serde_json::to_value(window::answer(
            &gates.config.freeze_windows,
            &request,
            jiff::Timestamp::now(),
        )),
        Request::BakePlan(request) => serde_json::to_value(bake::plan(gates, &request).await?),
        Request::BakeCheck(request) => serde_json::to_value(bake::check(gates, &request).await?),
        Request::Rollback(request) => {
            serde_json::to_value(rollback::automatic(gates, &request).await?)
        }
    };
    answer.map_err(|err| GateError::Invalid(format!("encoding the answer: {err}")))
}
