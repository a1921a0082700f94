//! site-build's side of the boundary: hand a build to the builder
//! function and take back only a checked archive of files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{Blob, ByteStream};
use tokio::time::Instant;
use tracing::{info, warn};

use super::handoff::{unpack_site, HandoffError, DEFAULT_MAX_SITE_BYTES};
use super::job::{BuildJob, BuildReport, BuilderStep};

/// Time the builder gets past the job's deadline to answer before it is
/// given up on (it stops its own work at the deadline).
const ANSWER_GRACE: Duration = Duration::from_secs(15);

/// Invokes the builder function and reads what it built.
#[derive(Debug, Clone)]
pub struct RemoteBuilder {
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    function: String,
    max_site_bytes: u64,
}

/// A build the builder finished, unpacked and checked.
#[derive(Debug)]
pub struct RemoteBuilt {
    pub output_dir: PathBuf,
    pub log_tail: Vec<String>,
    pub install: Duration,
    pub build: Duration,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteBuildError {
    /// The builder ran the build and it failed.
    #[error("{step} failed: {error}")]
    Failed {
        step: BuilderStep,
        error: String,
        out_of_time: bool,
        log_tail: Vec<String>,
    },
    #[error("handing the source to the builder: {0}")]
    Handoff(String),
    #[error("the builder {function} did not finish the build: {message}")]
    Builder { function: String, message: String },
    #[error("the builder {function} gave no answer before the time left for the build ran out")]
    OutOfTime { function: String },
    #[error("reading what the builder built: {0}")]
    Output(String),
    #[error(transparent)]
    Site(#[from] HandoffError),
}

impl RemoteBuildError {
    /// Where the build was when it stopped, as far as site-build knows.
    pub fn log_tail(&self) -> Vec<String> {
        match self {
            Self::Failed { log_tail, .. } => log_tail.clone(),
            _ => Vec::new(),
        }
    }
}

impl RemoteBuilder {
    /// `bucket` holds the handoff objects under `builds/`; `function` is
    /// the builder's name or ARN.
    pub fn new(
        lambda: aws_sdk_lambda::Client,
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        function: impl Into<String>,
    ) -> Self {
        Self {
            lambda,
            s3,
            bucket: bucket.into(),
            function: function.into(),
            max_site_bytes: DEFAULT_MAX_SITE_BYTES,
        }
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    /// Builds `archive` (the source of `repository` at `commit`) for
    /// `environment` in the builder, by `until`, and unpacks the site into
    /// `into`. `handoff` names this attempt's objects (`builds/{handoff}/…`).
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        &self,
        handoff: &str,
        repository: &str,
        commit: &str,
        environment: &str,
        archive: Vec<u8>,
        until: Instant,
        into: &Path,
    ) -> Result<RemoteBuilt, RemoteBuildError> {
        let source_key = format!("builds/{handoff}/source.tar.gz");
        let output_key = format!("builds/{handoff}/site.tar.gz");
        let result = self
            .build_inner(
                (&source_key, &output_key),
                repository,
                commit,
                environment,
                archive,
                until,
                into,
            )
            .await;
        for key in [&source_key, &output_key] {
            if let Err(e) = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                // The bucket's lifecycle rule removes it within a day.
                warn!(key = %key, error = %DisplayErrorContext(&e), "could not delete a handoff object");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_inner(
        &self,
        (source_key, output_key): (&str, &str),
        repository: &str,
        commit: &str,
        environment: &str,
        archive: Vec<u8>,
        until: Instant,
        into: &Path,
    ) -> Result<RemoteBuilt, RemoteBuildError> {
        let handoff = |what: &str, e: &dyn std::error::Error| {
            RemoteBuildError::Handoff(format!("{what}: {}", DisplayErrorContext(e)))
        };
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(source_key)
            .body(ByteStream::from(archive))
            .send()
            .await
            .map_err(|e| handoff(&format!("storing s3://{}/{source_key}", self.bucket), &e))?;
        let left = until.saturating_duration_since(Instant::now());
        let presigning =
            PresigningConfig::expires_in(left + ANSWER_GRACE + Duration::from_secs(60))
                .map_err(|e| handoff("presigning", &e))?;
        let source_url = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(source_key)
            .presigned(presigning.clone())
            .await
            .map_err(|e| handoff("presigning the source", &e))?;
        let output_url = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(output_key)
            .presigned(presigning)
            .await
            .map_err(|e| handoff("presigning the output", &e))?;
        let job = BuildJob {
            repository: repository.to_owned(),
            commit: commit.to_owned(),
            environment: environment.to_owned(),
            source_url: source_url.uri().to_owned(),
            output_url: output_url.uri().to_owned(),
            deadline_ms: epoch_ms_of(until),
        };
        let payload = serde_json::to_vec(&job).expect("a job serializes");
        info!(builder = %self.function, repository, commit, environment, "handing the build to the builder");
        let invoked = tokio::time::timeout(
            left + ANSWER_GRACE,
            self.lambda
                .invoke()
                .function_name(&self.function)
                .payload(Blob::new(payload))
                .send(),
        )
        .await
        .map_err(|_| RemoteBuildError::OutOfTime {
            function: self.function.clone(),
        })?;
        let builder_error = |message: String| RemoteBuildError::Builder {
            function: self.function.clone(),
            message,
        };
        let answer = invoked
            .map_err(|e| builder_error(format!("Invoke failed: {}", DisplayErrorContext(&e))))?;
        let body = answer.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = answer.function_error() {
            return Err(builder_error(format!("{kind}: {}", error_message(body))));
        }
        let report: BuildReport = serde_json::from_slice(body)
            .map_err(|e| builder_error(format!("its answer is not a build report: {e}")))?;
        let (log_tail, install_ms, build_ms) = match report {
            BuildReport::Failed {
                step,
                error,
                out_of_time,
                log_tail,
            } => {
                return Err(RemoteBuildError::Failed {
                    step,
                    error,
                    out_of_time,
                    log_tail,
                })
            }
            BuildReport::Built {
                log_tail,
                install_ms,
                build_ms,
                ..
            } => (log_tail, install_ms, build_ms),
        };
        let site = self.read_site(output_key).await?;
        let (into_owned, max) = (into.to_path_buf(), self.max_site_bytes);
        let files = tokio::task::spawn_blocking(move || unpack_site(&site, &into_owned, max))
            .await
            .map_err(|e| RemoteBuildError::Output(e.to_string()))??;
        Ok(RemoteBuilt {
            output_dir: into.to_path_buf(),
            log_tail,
            install: Duration::from_millis(install_ms),
            build: Duration::from_millis(build_ms),
            files,
        })
    }

    async fn read_site(&self, key: &str) -> Result<Vec<u8>, RemoteBuildError> {
        let failed =
            |e: String| RemoteBuildError::Output(format!("s3://{}/{key}: {e}", self.bucket));
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(&e).to_string()))?;
        if object
            .content_length()
            .is_some_and(|n| n as u64 > self.max_site_bytes)
        {
            return Err(failed(format!("larger than {} bytes", self.max_site_bytes)));
        }
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(body.to_vec())
    }
}

/// Lambda's `{"errorType", "errorMessage"}`, or the start of the body,
/// shortened: it comes from the sandbox, so it is only ever shown.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(300).collect()
}

/// Unix time in milliseconds of a monotonic instant.
fn epoch_ms_of(at: Instant) -> u64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    now_ms + at.saturating_duration_since(Instant::now()).as_millis() as u64
}
