//! The AWS API emulator: moto server, started from the project's venv.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::account::{RoleCredentials, ACCOUNT_ID, ADMIN_ACCESS_KEY, REGION};
use crate::faults::Faults;

/// The emulator launcher, from the repository root.
pub const LAUNCHER: &str = "tests/local-stack/launcher/moto_server.py";

/// How a test ends an ECS rollout ([`Emulator::end_ecs_rollout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutEnd {
    Completed,
    /// Its tasks fail to start: the circuit breaker, if on, fails it.
    Failed,
}

/// A running moto server on a loopback port; stopped when dropped.
pub struct Emulator {
    pub endpoint: String,
    pub port: u16,
    http: reqwest::Client,
    _child: Child,
}

impl Emulator {
    /// Starts `tests/local-stack/launcher/moto_server.py` with the venv's Python. The port
    /// is picked free, then bound by moto: another process can take it in
    /// between (tests start many servers at once), and moto then exits, so
    /// a server that exits before it is ready is started again on another
    /// port, three times at most.
    pub async fn start(root: &Path, log_file: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(root, log_file.clone()).await {
                Err(e) if attempt < 3 && e.to_string().contains("exited before it was ready") => {
                    tracing::warn!(
                        attempt,
                        "moto server exited before it was ready; starting it again on another port"
                    );
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(root: &Path, log_file: Option<PathBuf>) -> anyhow::Result<Self> {
        let python = venv_python(root)?;
        let port = free_port()?;
        let mut command = Command::new(&python);
        command
            .arg(root.join(LAUNCHER))
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        match log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting moto server with {}", python.display()))?;
        let stdout = child.stdout.take().context("moto stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("moto ready") {
                    return Ok::<_, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) | Ok(Err(_)) => bail!("moto server exited before it was ready"),
            Err(_) => bail!("moto server did not start within 60s"),
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let endpoint = format!("http://127.0.0.1:{port}");
        Ok(Self {
            endpoint,
            port,
            http: reqwest::Client::new(),
            _child: child,
        })
    }

    /// SDK configuration pointed at the emulator, as the harness's
    /// administrator (IAM user `deployer-admin`, allowed everything).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_with(aws_sdk_s3::config::Credentials::new(
            ADMIN_ACCESS_KEY,
            "testing",
            None,
            None,
            "local-stack",
        ))
        .await
    }

    /// SDK configuration pointed at the emulator, signing with a role
    /// session's credentials (what a function's SDK does).
    pub async fn sdk_config_as(&self, role: &RoleCredentials) -> aws_config::SdkConfig {
        self.sdk_config_with(aws_sdk_s3::config::Credentials::new(
            &role.access_key_id,
            &role.secret_access_key,
            Some(role.session_token.clone()),
            None,
            "local-stack-role",
        ))
        .await
    }

    async fn sdk_config_with(
        &self,
        credentials: aws_sdk_s3::config::Credentials,
    ) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// The fault engine and CloudFormation's pace (see [`crate::faults`]).
    pub fn faults(&self) -> Faults {
        Faults::new(&self.endpoint)
    }

    /// Environment for a process that talks to the emulator as the
    /// harness's administrator (the `deployer` CLI, scripts).
    pub fn client_env(&self) -> Vec<(String, String)> {
        self.env_with_keys(ADMIN_ACCESS_KEY, "testing", None)
    }

    /// Environment for a process that talks to the emulator with a role
    /// session's credentials (a function; see [`crate::iam`]).
    pub fn client_env_with(&self, role: &RoleCredentials) -> Vec<(String, String)> {
        self.env_with_keys(
            &role.access_key_id,
            &role.secret_access_key,
            Some(&role.session_token),
        )
    }

    fn env_with_keys(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", access_key_id),
            ("AWS_SECRET_ACCESS_KEY", secret_access_key),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .chain(session_token.map(|token| ("AWS_SESSION_TOKEN", token)))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Creates IAM roles and role sessions on the emulator (the control API
    /// in launcher/iam.py); answers its JSON.
    pub async fn install_roles(&self, request: Value) -> anyhow::Result<Value> {
        self.control("iam/roles", "installing IAM roles", &request)
            .await
    }

    /// Sends the Step Functions interpreter's `lambda:invoke` tasks to
    /// `lambda_endpoint` (moto's own Lambda needs Docker) and answers the
    /// access key id the interpreter's session of `role_arn` signs with.
    pub async fn route_interpreter_lambda(
        &self,
        role_arn: &str,
        lambda_endpoint: &str,
    ) -> anyhow::Result<String> {
        let request = serde_json::json!({"role_arn": role_arn, "lambda_endpoint": lambda_endpoint});
        let answer = self
            .control(
                "iam/interpreter",
                "routing the interpreter's Lambda calls",
                &request,
            )
            .await?;
        answer["AccessKeyId"]
            .as_str()
            .map(str::to_owned)
            .context("the emulator named no interpreter access key")
    }

    /// Ends the current rollout of an ECS service as ECS would
    /// (tests/local-stack/launcher/ecs.py): `completed`, or `failed` (only with the
    /// service's circuit breaker on; rolled back when its rollback is on).
    /// ECS's events go to the default bus. Answers the events sent.
    pub async fn end_ecs_rollout(
        &self,
        cluster: &str,
        service: &str,
        outcome: RolloutEnd,
    ) -> anyhow::Result<Value> {
        let outcome = match outcome {
            RolloutEnd::Completed => "completed",
            RolloutEnd::Failed => "failed",
        };
        let request =
            serde_json::json!({"cluster": cluster, "service": service, "outcome": outcome});
        self.control(
            "ecs/rollout",
            &format!("ending the rollout of {service} ({outcome})"),
            &request,
        )
        .await
    }

    /// POST `/_deployer/{path}`: the launcher's control APIs
    /// (tests/local-stack/launcher/iam.py, launcher/ecs.py).
    async fn control(&self, path: &str, what: &str, request: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/_deployer/{path}", self.endpoint))
            .json(request)
            .send()
            .await
            .with_context(|| format!("{what} on the emulator"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{what} failed with {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("the emulator's answer to {what}"))
    }

    /// A call in the AWS JSON protocol, for the APIs whose raw JSON the local
    /// stack forwards unchanged (DynamoDB Streams records, SQS bodies).
    pub async fn json_call(
        &self,
        service: &str,
        target: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", target)
            .header("authorization", fake_authorization(service))
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("{target} to the emulator"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{target} failed with {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates an SQS queue; returns its URL and ARN.
    pub async fn create_queue(&self, name: &str) -> anyhow::Result<(String, String)> {
        let created = self
            .json_call("sqs", "AmazonSQS.CreateQueue", json!({"QueueName": name}))
            .await?;
        let url = created
            .get("QueueUrl")
            .and_then(Value::as_str)
            .with_context(|| format!("CreateQueue {name} returned no QueueUrl"))?
            .to_owned();
        Ok((url, format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")))
    }

    /// A call in the AWS query protocol (SNS).
    pub async fn query_call(
        &self,
        service: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("authorization", fake_authorization(service))
            .form(params)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!(
                "{service} {:?} failed with {status}: {text}",
                params.first()
            );
        }
        Ok(text)
    }

    /// Enables running state machines (moto only records them by default).
    pub async fn enable_state_machine_execution(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/moto-api/config", self.endpoint))
            .json(&json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "enabling state machine execution failed: {}",
                response.status()
            );
        }
        Ok(())
    }
}

/// moto routes requests by the service in the credential scope; the
/// administrator's signature is not checked (tests/local-stack/launcher/iam.py).
fn fake_authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

pub fn venv_python(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("DEPLOYER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        bail!(
            "{} not found: run `make setup` to create the project venv with moto server",
            python.display()
        );
    }
    Ok(python)
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
