//! The builder's side: one build per invocation, in a sandbox that holds
//! nothing worth stealing and keeps nothing between builds.
//!
//! Every build starts and ends the same way: every other process of this
//! sandbox's user is killed (a `setsid()` daemon left by the last build
//! included) and the scratch folder is emptied. The npm cache and `HOME`
//! live in the scratch folder, so no build trusts anything an earlier one
//! wrote. The function's role grants nothing, and its only way to the
//! bucket is the two presigned URLs of the job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::handoff::pack_site;
use super::job::{BuildJob, BuildReport, BuilderStep};
use crate::build::source::unpack;
use crate::build::{BuildStep, FailureCause, NpmBuilder, DEFAULT_MAX_SOURCE_BYTES};

/// Time kept back from the function's own deadline to send the report.
const REPORT_MARGIN: Duration = Duration::from_secs(5);

/// Runs builds inside the builder function.
#[derive(Debug, Clone)]
pub struct IsolatedBuilder {
    http: reqwest::Client,
    npm: PathBuf,
    scratch: PathBuf,
    /// This sandbox's user runs nothing but this function, so every other
    /// process of it is a leftover (true in Lambda; the local stack gives
    /// the builder a user of its own).
    owns_user: bool,
    max_source_bytes: u64,
    step_timeout: Option<Duration>,
}

impl IsolatedBuilder {
    pub fn new(
        npm: impl Into<PathBuf>,
        scratch: impl Into<PathBuf>,
        owns_user: bool,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            npm: npm.into(),
            scratch: scratch.into(),
            owns_user,
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
            step_timeout: None,
        })
    }

    /// Time for each npm step (default: [`crate::build::DEFAULT_STEP_TIMEOUT`]).
    pub fn with_step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// One build. `deadline` is the invocation's own; the job's deadline
    /// is kept too, whichever comes first.
    pub async fn run(&self, job: &BuildJob, deadline: Instant) -> BuildReport {
        let until = deadline
            .checked_sub(REPORT_MARGIN)
            .unwrap_or(deadline)
            .min(instant_of(job.deadline_ms));
        info!(repository = %job.repository, commit = %job.commit, environment = %job.environment, "build starts");
        self.reset().await;
        let report = self.build(job, until).await;
        self.reset().await;
        match &report {
            BuildReport::Built { files, bytes, .. } => info!(files, bytes, "build done"),
            BuildReport::Failed { step, error, .. } => {
                warn!(%step, %error, "build failed")
            }
        }
        report
    }

    async fn build(&self, job: &BuildJob, until: Instant) -> BuildReport {
        let failed =
            |step: BuilderStep, error: String, log_tail: Vec<String>| BuildReport::Failed {
                step,
                error,
                out_of_time: false,
                log_tail,
            };
        let left = until.saturating_duration_since(Instant::now());
        let archive = match tokio::time::timeout(left, self.download(&job.source_url)).await {
            Ok(Ok(archive)) => archive,
            Ok(Err(error)) => return failed(BuilderStep::Source, error, Vec::new()),
            Err(_) => {
                return BuildReport::Failed {
                    step: BuilderStep::Source,
                    error: "the time left for the build ran out while getting the source".into(),
                    out_of_time: true,
                    log_tail: Vec::new(),
                }
            }
        };
        let tree = self.scratch.join("src");
        let unpacked = {
            let (repository, commit, tree, max) = (
                job.repository.clone(),
                job.commit.clone(),
                tree.clone(),
                self.max_source_bytes,
            );
            tokio::task::spawn_blocking(move || unpack(&archive, &repository, &commit, &tree, max))
                .await
        };
        match unpacked {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return failed(BuilderStep::Source, e.to_string(), Vec::new()),
            Err(join) => return failed(BuilderStep::Source, join.to_string(), Vec::new()),
        }

        let mut npm = NpmBuilder::new(&self.npm, self.scratch.join("npm-cache"))
            .with_home(self.scratch.join("home"));
        if let Some(timeout) = self.step_timeout {
            npm = npm.with_step_timeout(timeout);
        }
        let built = npm.build_until(&tree, &job.environment, Some(until)).await;
        // Whatever the build started dies before its output is read.
        self.stop_leftovers();
        let built = match built {
            Ok(built) => built,
            Err(failure) => {
                let step = match failure.step {
                    BuildStep::Install => BuilderStep::Install,
                    BuildStep::Build => BuilderStep::Build,
                    BuildStep::Output => BuilderStep::Output,
                };
                return BuildReport::Failed {
                    step,
                    out_of_time: matches!(failure.cause, FailureCause::OutOfTime { .. }),
                    error: failure.to_string(),
                    log_tail: failure.log_tail,
                };
            }
        };
        let output = built.output_dir.clone();
        let packed = tokio::task::spawn_blocking(move || pack_site(&output)).await;
        let packed = match packed {
            Ok(Ok(packed)) => packed,
            Ok(Err(e)) => return failed(BuilderStep::Output, e.to_string(), built.log_tail),
            Err(join) => return failed(BuilderStep::Output, join.to_string(), built.log_tail),
        };
        let (files, bytes) = (packed.files, packed.bytes);
        let left = until.saturating_duration_since(Instant::now());
        let uploaded =
            tokio::time::timeout(left, self.upload(&job.output_url, packed.archive)).await;
        match uploaded {
            Ok(Ok(())) => BuildReport::Built {
                log_tail: built.log_tail,
                install_ms: built.durations.install.as_millis() as u64,
                build_ms: built.durations.build.as_millis() as u64,
                files,
                bytes,
            },
            Ok(Err(error)) => failed(BuilderStep::Upload, error, built.log_tail),
            Err(_) => BuildReport::Failed {
                step: BuilderStep::Upload,
                error: "the time left for the build ran out during the upload".into(),
                out_of_time: true,
                log_tail: built.log_tail,
            },
        }
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("getting the source archive: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("getting the source archive: HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_source_bytes)
        {
            return Err(format!(
                "the source archive is larger than {} bytes",
                self.max_source_bytes
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("getting the source archive: {}", e.without_url()))?;
        Ok(body.to_vec())
    }

    async fn upload(&self, url: &str, archive: Vec<u8>) -> Result<(), String> {
        let response = self
            .http
            .put(url)
            .body(archive)
            .send()
            .await
            .map_err(|e| format!("uploading the built site: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("uploading the built site: HTTP {status}"));
        }
        Ok(())
    }

    /// Kills leftovers and empties the scratch folder.
    async fn reset(&self) {
        self.stop_leftovers();
        let scratch = self.scratch.clone();
        let emptied = tokio::task::spawn_blocking(move || empty_folder(&scratch)).await;
        if let Ok(Err(e)) = emptied {
            warn!(scratch = %self.scratch.display(), error = %e, "could not empty the scratch folder");
        }
    }

    /// SIGKILL to every process of this user but this one, until none is
    /// left (a process may fork while the first round runs).
    fn stop_leftovers(&self) {
        if !self.owns_user {
            return;
        }
        // SAFETY: getuid and getpid take nothing and cannot fail.
        let (uid, me) = unsafe { (libc::getuid(), libc::getpid() as u32) };
        if uid == 0 {
            warn!("the builder runs as root; leftovers are not stopped (it must have a user of its own)");
            return;
        }
        for round in 0..20 {
            let found: Vec<u32> = processes_of_user(uid)
                .into_iter()
                .filter(|&pid| pid != me)
                .collect();
            if found.is_empty() {
                return;
            }
            if round == 0 {
                warn!(
                    count = found.len(),
                    "stopping processes the build left running"
                );
            }
            for pid in found {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes this process unreadable to the builds it starts: they run as the
/// same user, and without this could read its environment (the function's
/// credentials) and memory (the job's presigned URLs) through
/// `/proc/{pid}/environ` and `/proc/{pid}/mem`, or ptrace it. A process
/// that is not dumpable is readable only by root. npm and its children
/// are dumpable again after `execve`, which is fine: they hold nothing.
pub fn seal_process() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integers and only
    // changes this process's dumpable flag.
    let done = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The live (not zombie) processes whose real user is `uid`, from /proc.
pub fn processes_of_user(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let zombie = status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            !zombie && real_uid(&status) == Some(uid)
        })
        .collect()
}

/// The real user of process `pid`, from /proc.
pub fn uid_of(pid: u32) -> Option<u32> {
    real_uid(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The real uid in a `/proc/{pid}/status` text.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|id| id.parse().ok())
}

/// Removes everything inside `dir` (creating it if missing).
fn empty_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            // A build can make a folder it cannot be removed from (no write
            // permission on it); give it back and try once more.
            use std::os::unix::fs::PermissionsExt;
            let _ = make_writable(&path, std::fs::Permissions::from_mode(0o700));
            std::fs::remove_dir_all(&path).map_err(|_| e)?;
        }
    }
    Ok(())
}

fn make_writable(path: &Path, mode: std::fs::Permissions) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::set_permissions(path, mode.clone())?;
        for entry in std::fs::read_dir(path)? {
            make_writable(&entry?.path(), mode.clone())?;
        }
    }
    Ok(())
}

/// The monotonic instant of a Unix time in milliseconds.
fn instant_of(epoch_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(now_ms))
}
