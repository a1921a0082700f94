//! `npm ci` and `npm run build` in a source tree.
//!
//! The npm cache lives outside the tree and outlives it (in `/tmp` of a
//! warm Lambda, or on EFS), so a build whose lockfile has not changed
//! installs from the cache without asking the registry (`--prefer-offline`).
//!
//! The build scripts are the repository's code. They run with a cleared
//! environment plus an allowlist, so they never see the function's AWS
//! credentials or tokens, and in a process group of their own, so a timeout
//! kills everything they started, not just npm.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tracing::{info, warn};

use super::tail::{LogTail, DEFAULT_TAIL_LINES};

/// Time for each step. A site that takes longer than this is stuck, not
/// slow (the target is two minutes for a whole build); Lambda's own
/// ceiling is 15 minutes.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where builds put the site, in the order they are looked for: `dist`
/// (Astro, Vite), `build` (Create React App, Docusaurus), `out` (Next.js
/// static export).
pub const OUTPUT_DIRS: [&str; 3] = ["dist", "build", "out"];

/// Variables passed on from the function's environment: locale, temp dir,
/// proxies and CA certificates. Everything else, AWS credentials included,
/// stays out of the build (`npm_config_*` passes too, for registry
/// settings).
const INHERITED: &[&str] = &[
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// When PATH is not set at all.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long output may still arrive after a step's process exits (from
/// something it left running) before it is no longer waited for.
const DRAIN: Duration = Duration::from_secs(5);

/// A step of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildStep {
    /// `npm ci`
    Install,
    /// `npm run build`
    Build,
    /// Finding what the build wrote.
    Output,
}

impl fmt::Display for BuildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildStep::Install => "npm ci",
            BuildStep::Build => "npm run build",
            BuildStep::Output => "finding the built site",
        })
    }
}

/// How long each step took (zero for a step that did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepDurations {
    pub install: Duration,
    pub build: Duration,
}

impl StepDurations {
    pub fn total(&self) -> Duration {
        self.install + self.build
    }
}

/// A build that worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltSite {
    /// The site to publish: `dist/`, `build/` or `out/` of the tree.
    pub output_dir: PathBuf,
    /// The last lines of both steps' output, with a `$ npm ...` line where
    /// each step starts.
    pub log_tail: Vec<String>,
    pub durations: StepDurations,
}

/// A build that did not work. Nothing was published; the log tail is what
/// the build's record and notification show.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed: {cause}")]
pub struct BuildFailure {
    pub step: BuildStep,
    pub cause: FailureCause,
    pub log_tail: Vec<String>,
    pub durations: StepDurations,
}

impl BuildFailure {
    /// The step's exit code, when it exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self.cause {
            FailureCause::Exited { code } => Some(code),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FailureCause {
    #[error("it exited with status {code}")]
    Exited { code: i32 },
    #[error("it was killed by signal {signal}")]
    Signalled { signal: i32 },
    #[error("it ran longer than {after:?} and was killed")]
    TimedOut { after: Duration },
    /// The build's deadline came first (see [`NpmBuilder::build_until`]).
    #[error("the time left for the build ran out after {after:?}; it was killed")]
    OutOfTime { after: Duration },
    #[error("cannot start {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("the build wrote none of {} in {tree}", OUTPUT_DIRS.map(|d| format!("{d}/")).join(", "))]
    NoOutput { tree: PathBuf },
    #[error("{path} leads outside the source tree")]
    OutputOutsideTree { path: PathBuf },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

/// Runs a site's npm build. Cheap to clone; one per process is enough.
#[derive(Debug, Clone)]
pub struct NpmBuilder {
    npm: PathBuf,
    cache_dir: PathBuf,
    /// `HOME` and `TMPDIR` of the steps, when not the function's own.
    home: Option<PathBuf>,
    timeout: Duration,
    tail_lines: usize,
}

impl NpmBuilder {
    /// `npm` is the npm executable: a path (Lambda has no npm on PATH; a
    /// layer brings it, with `node` in the same folder) or a bare name
    /// looked up on PATH. `cache_dir` is npm's cache, shared by builds.
    pub fn new(npm: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        let npm = npm.into();
        // A relative path would be resolved against the tree once the step
        // runs there.
        let npm = if npm.components().count() > 1 {
            std::path::absolute(&npm).unwrap_or(npm)
        } else {
            npm
        };
        let cache_dir = cache_dir.into();
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        Self {
            npm,
            cache_dir,
            home: None,
            timeout: DEFAULT_STEP_TIMEOUT,
            tail_lines: DEFAULT_TAIL_LINES,
        }
    }

    /// Time for each of `npm ci` and `npm run build`.
    pub fn with_step_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Gives the steps `home` as their `HOME` and `TMPDIR` (created when
    /// the build starts), so nothing they write there outlives the build's
    /// folder.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Lines of output kept for the log tail.
    pub fn with_tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    pub fn npm(&self) -> &Path {
        &self.npm
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Installs and builds the site in `tree` for `environment` (exported
    /// as `PUBLIC_ENV`) and finds its output.
    pub async fn build(&self, tree: &Path, environment: &str) -> Result<BuiltSite, BuildFailure> {
        self.build_until(tree, environment, None).await
    }

    /// [`Self::build`], with every step ending by `until` at the latest: a
    /// step cut short by it fails with [`FailureCause::OutOfTime`], and a
    /// step with less than a second left is not started.
    pub async fn build_until(
        &self,
        tree: &Path,
        environment: &str,
        until: Option<Instant>,
    ) -> Result<BuiltSite, BuildFailure> {
        let mut session = self.session(tree, environment)?;
        session.install(until).await?;
        session.build(until).await?;
        session.output()
    }

    /// The steps of one build, one at a time, for callers that record
    /// which step is running: [`NpmSession::install`], then
    /// [`NpmSession::build`], then [`NpmSession::output`].
    pub fn session<'a>(
        &'a self,
        tree: &'a Path,
        environment: &'a str,
    ) -> Result<NpmSession<'a>, BuildFailure> {
        let session = NpmSession {
            builder: self,
            tree,
            environment,
            tail: LogTail::new(self.tail_lines),
            durations: StepDurations::default(),
        };
        for (what, dir) in std::iter::once(("the npm cache", &self.cache_dir))
            .chain(self.home.iter().map(|home| ("the build's home", home)))
        {
            if let Err(source) = std::fs::create_dir_all(dir) {
                let cause = FailureCause::Io {
                    what: format!("cannot create {what} {}", dir.display()),
                    source,
                };
                return Err(session.fail(BuildStep::Install, cause));
            }
        }
        if !tree.is_dir() {
            let cause = FailureCause::Io {
                what: format!("cannot build in {}", tree.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            };
            return Err(session.fail(BuildStep::Install, cause));
        }
        Ok(session)
    }

    /// The environment of a step, from nothing: see [`INHERITED`].
    /// `NODE_ENV=production` is for the build only: under it `npm ci`
    /// would skip devDependencies, where Vite and friends usually are.
    fn step_env(&self, environment: &str, production: bool) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(name, _)| {
                let name = name.to_string_lossy();
                INHERITED.contains(&name.as_ref())
                    || (name.to_ascii_lowercase().starts_with("npm_config_")
                        && !is_ours(&name.to_ascii_lowercase()))
            })
            .collect();
        if let Some(home) = &self.home {
            env.retain(|(name, _)| name != "HOME" && name != "TMPDIR");
            env.push(("HOME".into(), home.clone().into()));
            env.push(("TMPDIR".into(), home.clone().into()));
        }
        env.push(("PATH".into(), self.path_var()));
        env.push(("PUBLIC_ENV".into(), environment.into()));
        env.push(("CI".into(), "true".into()));
        if production {
            env.push(("NODE_ENV".into(), "production".into()));
        }
        env.push(("npm_config_cache".into(), self.cache_dir.clone().into()));
        env.push(("npm_config_update_notifier".into(), "false".into()));
        env.push(("npm_config_progress".into(), "false".into()));
        env.push(("npm_config_color".into(), "false".into()));
        env.push(("NO_COLOR".into(), "1".into()));
        env
    }

    /// PATH with npm's folder first: npm's launcher finds `node` on PATH,
    /// and a layer puts both in one folder.
    fn path_var(&self) -> OsString {
        let inherited = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = self.npm.parent().filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(dir.to_path_buf());
        }
        dirs.extend(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).unwrap_or(inherited)
    }

    /// Runs `npm {args}` in `tree`, its output into `tail`, within the step
    /// timeout and by `until`. Returns how long it took.
    async fn run(
        &self,
        args: &[&str],
        tree: &Path,
        env: &[(OsString, OsString)],
        until: Option<Instant>,
        tail: &mut LogTail,
    ) -> (Duration, Result<(), FailureCause>) {
        let started = Instant::now();
        let shown = format!("npm {}", args.join(" "));
        let left = until.map(|until| until.saturating_duration_since(started));
        if left.is_some_and(|left| left < SHORTEST_STEP) {
            tail.note(format!("[site-build] no time left to start {shown}"));
            warn!(step = %shown, "no time left to start the step");
            return (
                Duration::ZERO,
                Err(FailureCause::OutOfTime {
                    after: Duration::ZERO,
                }),
            );
        }
        let limit = match left {
            Some(left) if left < self.timeout => Limit::Budget(left),
            _ => Limit::Step(self.timeout),
        };
        tail.note(format!("$ {shown}"));
        info!(step = %shown, tree = %tree.display(), limit_s = limit.duration().as_secs(), "{shown} starts");
        let result = self.run_inner(args, tree, env, limit, tail).await;
        let took = started.elapsed();
        match &result {
            Ok(()) => info!(step = %shown, ms = took.as_millis() as u64, "build step done"),
            Err(cause) => {
                warn!(step = %shown, ms = took.as_millis() as u64, %cause, "build step failed")
            }
        }
        (took, result)
    }

    async fn run_inner(
        &self,
        args: &[&str],
        tree: &Path,
        env: &[(OsString, OsString)],
        limit: Limit,
        tail: &mut LogTail,
    ) -> Result<(), FailureCause> {
        let io_error = |what: &str| {
            let what = what.to_owned();
            move |source| FailureCause::Io { what, source }
        };
        // One pipe for both streams keeps their lines in the order written.
        let (reader, writer) = io::pipe().map_err(io_error("cannot create a pipe"))?;
        let writer_too = writer
            .try_clone()
            .map_err(io_error("cannot create a pipe"))?;
        let mut command = tokio::process::Command::new(&self.npm);
        command
            .args(args)
            .current_dir(tree)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())))
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_too)
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        // Our copies of the pipe's writing end go with the command, so the
        // reader sees the end once the step's processes have exited.
        drop(command);
        let mut child = spawned.map_err(|source| FailureCause::Spawn {
            program: self.npm.clone(),
            source,
        })?;
        let group = child.id();
        let mut output = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(io_error("cannot read the step's output"))?;

        let deadline = Instant::now() + limit.duration();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut status: Option<ExitStatus> = None;
        let mut drained_by: Option<Instant> = None;
        let mut eof = false;
        let mut timed_out = false;
        while !(eof && status.is_some()) {
            tokio::select! {
                read = output.read(&mut buffer), if !eof => match read {
                    Ok(0) => eof = true,
                    Ok(n) => tail.push(&buffer[..n]),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        tail.note(format!("[site-build] reading the output failed: {error}"));
                        eof = true;
                    }
                },
                waited = child.wait(), if status.is_none() => {
                    status = Some(waited.map_err(io_error("cannot wait for npm"))?);
                    // Whatever the step left running would live on in a warm
                    // Lambda, and would hold the pipe open.
                    if let Some(group) = group {
                        kill_group(group);
                    }
                    drained_by = Some(Instant::now() + DRAIN);
                },
                () = tokio::time::sleep_until(deadline), if !timed_out && status.is_none() => {
                    timed_out = true;
                    tail.note(match limit {
                        Limit::Step(after) => format!(
                            "[site-build] npm {} ran longer than {after:?}; killing it",
                            args.join(" ")
                        ),
                        Limit::Budget(after) => format!(
                            "[site-build] npm {} used the {after:?} left for the build; killing it",
                            args.join(" ")
                        ),
                    });
                    if let Some(group) = group {
                        kill_group(group);
                    }
                    let _ = child.start_kill();
                },
                () = tokio::time::sleep_until(drained_by.unwrap_or(deadline)), if drained_by.is_some() => {
                    tail.note("[site-build] output still open after the step exited; not waiting for it");
                    break;
                },
            }
        }
        let status = status.expect("the loop ends only after the step exited");
        if timed_out {
            return Err(match limit {
                Limit::Step(after) => FailureCause::TimedOut { after },
                Limit::Budget(after) => FailureCause::OutOfTime { after },
            });
        }
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(FailureCause::Exited { code }),
            (None, Some(signal)) => Err(FailureCause::Signalled { signal }),
            (None, None) => Err(FailureCause::Exited { code: -1 }),
        }
    }
}

/// One build's steps in a source tree, sharing one log tail.
pub struct NpmSession<'a> {
    builder: &'a NpmBuilder,
    tree: &'a Path,
    environment: &'a str,
    tail: LogTail,
    durations: StepDurations,
}

impl NpmSession<'_> {
    fn fail(&self, step: BuildStep, cause: FailureCause) -> BuildFailure {
        BuildFailure {
            step,
            cause,
            log_tail: self.tail.lines(),
            durations: self.durations,
        }
    }

    /// `npm ci`, ending by `until`.
    pub async fn install(&mut self, until: Option<Instant>) -> Result<(), BuildFailure> {
        let env = self.builder.step_env(self.environment, false);
        let install = ["ci", "--prefer-offline", "--no-audit", "--no-fund"];
        let (took, result) = self
            .builder
            .run(&install, self.tree, &env, until, &mut self.tail)
            .await;
        self.durations.install = took;
        result.map_err(|cause| self.fail(BuildStep::Install, cause))
    }

    /// `npm run build`, ending by `until`.
    pub async fn build(&mut self, until: Option<Instant>) -> Result<(), BuildFailure> {
        let env = self.builder.step_env(self.environment, true);
        let (took, result) = self
            .builder
            .run(&["run", "build"], self.tree, &env, until, &mut self.tail)
            .await;
        self.durations.build = took;
        result.map_err(|cause| self.fail(BuildStep::Build, cause))
    }

    /// The folder the build wrote.
    pub fn output(self) -> Result<BuiltSite, BuildFailure> {
        match find_output(self.tree) {
            Ok(output_dir) => {
                info!(
                    output_dir = %output_dir.display(),
                    install_ms = self.durations.install.as_millis() as u64,
                    build_ms = self.durations.build.as_millis() as u64,
                    "site built"
                );
                Ok(BuiltSite {
                    output_dir,
                    log_tail: self.tail.lines(),
                    durations: self.durations,
                })
            }
            Err(cause) => Err(self.fail(BuildStep::Output, cause)),
        }
    }
}

/// Less time than this left: a step is not started.
const SHORTEST_STEP: Duration = Duration::from_secs(1);

/// What bounds a step's time.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// The step's own timeout.
    Step(Duration),
    /// The time left for the whole build, shorter than the step's timeout.
    Budget(Duration),
}

impl Limit {
    fn duration(self) -> Duration {
        match self {
            Limit::Step(d) | Limit::Budget(d) => d,
        }
    }
}

/// `npm_config_*` names this builder sets itself.
fn is_ours(lowercase_name: &str) -> bool {
    matches!(
        lowercase_name,
        "npm_config_cache"
            | "npm_config_update_notifier"
            | "npm_config_progress"
            | "npm_config_color"
    )
}

/// The first of [`OUTPUT_DIRS`] that the build wrote, as a real path inside
/// the tree.
fn find_output(tree: &Path) -> Result<PathBuf, FailureCause> {
    let real_tree = tree.canonicalize().map_err(|source| FailureCause::Io {
        what: format!("cannot resolve {}", tree.display()),
        source,
    })?;
    for name in OUTPUT_DIRS {
        let candidate = tree.join(name);
        let Ok(real) = candidate.canonicalize() else {
            continue;
        };
        if !real.starts_with(&real_tree) {
            return Err(FailureCause::OutputOutsideTree { path: candidate });
        }
        if real.is_dir() {
            return Ok(real);
        }
    }
    Err(FailureCause::NoOutput {
        tree: tree.to_path_buf(),
    })
}

/// SIGKILL to every process of the group `group` (the step's npm started
/// it, and its children stay in it).
fn kill_group(group: u32) {
    let Ok(group) = libc::pid_t::try_from(group) else {
        return;
    };
    // 0 and 1 would signal our own group or every process: never.
    if group <= 1 {
        return;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // group that has already exited answers ESRCH, which is fine.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    /// A temp directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("site-build-npm-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A stand-in for npm: a shell script that runs `$1`'s case.
    fn fake_npm(dir: &Path, script: &str) -> PathBuf {
        let path = dir.join("bin/npm");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn tree(scratch: &Scratch) -> PathBuf {
        let tree = scratch.0.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        tree
    }

    #[tokio::test]
    async fn the_environment_is_exported_and_secrets_are_not() {
        let scratch = Scratch::new("env");
        let npm = fake_npm(
            &scratch.0,
            r#"if [ "$1" = run ]; then
  mkdir -p dist
  echo "env=$PUBLIC_ENV node_env=${NODE_ENV:-unset} ci=$CI cache=$npm_config_cache"
  echo "cargo=${CARGO_MANIFEST_DIR:-none} path_first=${PATH%%:*}"
else
  echo "install node_env=${NODE_ENV:-unset} args=$*"
fi"#,
        );
        let builder = NpmBuilder::new(&npm, scratch.0.join("cache"));
        let built = builder.build(&tree(&scratch), "staging").await.unwrap();
        let log = built.log_tail.join("\n");
        assert!(
            log.contains("install node_env=unset args=ci --prefer-offline --no-audit --no-fund"),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "env=staging node_env=production ci=true cache={}",
                scratch.0.join("cache").display()
            )),
            "{log}"
        );
        // cargo sets it for the test process; it stands for any secret.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(log.contains("cargo=none"), "{log}");
        assert!(
            log.contains(&format!("path_first={}", npm.parent().unwrap().display())),
            "{log}"
        );
        assert!(built.output_dir.ends_with("dist"));
        assert!(scratch.0.join("cache").is_dir());
    }

    #[tokio::test]
    async fn stderr_and_stdout_share_one_tail_in_order() {
        let scratch = Scratch::new("order");
        let npm = fake_npm(
            &scratch.0,
            r#"[ "$1" = ci ] && exit 0
echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; exit 3"#,
        );
        let failure = NpmBuilder::new(&npm, scratch.0.join("cache"))
            .build(&tree(&scratch), "preview")
            .await
            .unwrap_err();
        assert_eq!(failure.step, BuildStep::Build);
        assert_eq!(failure.exit_code(), Some(3));
        assert_eq!(
            failure.log_tail,
            [
                "$ npm ci --prefer-offline --no-audit --no-fund",
                "$ npm run build",
                "out-1",
                "err-1",
                "out-2",
                "err-2"
            ]
        );
        assert_eq!(
            failure.to_string(),
            "npm run build failed: it exited with status 3"
        );
    }

    #[tokio::test]
    async fn a_step_over_its_timeout_is_killed_with_everything_it_started() {
        let scratch = Scratch::new("timeout");
        let marker = scratch.0.join("survived");
        let npm = fake_npm(
            &scratch.0,
            &format!(
                r#"echo starting
(sleep 3; touch {}) &
sleep 30"#,
                marker.display()
            ),
        );
        let started = std::time::Instant::now();
        let failure = NpmBuilder::new(&npm, scratch.0.join("cache"))
            .with_step_timeout(Duration::from_millis(500))
            .build(&tree(&scratch), "preview")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(failure.step, BuildStep::Install);
        assert!(
            matches!(failure.cause, FailureCause::TimedOut { after } if after == Duration::from_millis(500)),
            "{failure:?}"
        );
        assert!(failure.log_tail.iter().any(|l| l == "starting"));
        assert!(failure.log_tail.last().unwrap().contains("killing it"));
        // The background child died with its group.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a process of the step outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_step_cut_short_by_the_build_deadline_is_out_of_time_not_timed_out() {
        let scratch = Scratch::new("deadline");
        let npm = fake_npm(
            &scratch.0,
            r#"[ "$1" = ci ] && exit 0
echo building; sleep 30"#,
        );
        let builder = NpmBuilder::new(&npm, scratch.0.join("cache"));
        let started = Instant::now();
        let failure = builder
            .build_until(
                &tree(&scratch),
                "preview",
                Some(started + Duration::from_millis(1500)),
            )
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(failure.step, BuildStep::Build);
        assert!(
            matches!(failure.cause, FailureCause::OutOfTime { .. }),
            "{failure:?}"
        );
        assert!(failure.log_tail.iter().any(|l| l == "building"));
        assert!(
            failure
                .log_tail
                .last()
                .unwrap()
                .contains("left for the build; killing it"),
            "{:?}",
            failure.log_tail
        );

        // Less than a second left: the step does not start at all.
        let failure = builder
            .build_until(
                &tree(&scratch),
                "preview",
                Some(Instant::now() + Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.step, BuildStep::Install);
        assert!(matches!(failure.cause, FailureCause::OutOfTime { after } if after.is_zero()));
        assert_eq!(
            failure.log_tail,
            ["[site-build] no time left to start npm ci --prefer-offline --no-audit --no-fund"]
        );
    }

    #[tokio::test]
    async fn a_background_process_left_running_does_not_hold_the_build() {
        let scratch = Scratch::new("straggler");
        let npm = fake_npm(
            &scratch.0,
            r#"[ "$1" = run ] && mkdir -p build
(sleep 30; echo late) &
echo done"#,
        );
        let started = std::time::Instant::now();
        let built = NpmBuilder::new(&npm, scratch.0.join("cache"))
            .build(&tree(&scratch), "preview")
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(built.output_dir.ends_with("build"));
    }

    #[tokio::test]
    async fn a_build_without_output_names_what_was_looked_for() {
        let scratch = Scratch::new("nooutput");
        let npm = fake_npm(&scratch.0, "echo ok");
        let failure = NpmBuilder::new(&npm, scratch.0.join("cache"))
            .build(&tree(&scratch), "preview")
            .await
            .unwrap_err();
        assert_eq!(failure.step, BuildStep::Output);
        let message = failure.to_string();
        assert!(message.contains("dist/, build/, out/"), "{message}");
    }

    #[tokio::test]
    async fn output_dirs_are_looked_for_in_order_and_must_stay_inside() {
        let scratch = Scratch::new("outputs");
        let tree = tree(&scratch);
        std::fs::create_dir_all(tree.join("out")).unwrap();
        std::fs::create_dir_all(tree.join("build")).unwrap();
        assert!(find_output(&tree).unwrap().ends_with("build"));
        std::fs::create_dir_all(tree.join("dist")).unwrap();
        assert!(find_output(&tree).unwrap().ends_with("dist"));
        std::fs::remove_dir(tree.join("dist")).unwrap();
        std::os::unix::fs::symlink(&scratch.0, tree.join("dist")).unwrap();
        assert!(matches!(
            find_output(&tree),
            Err(FailureCause::OutputOutsideTree { .. })
        ));
    }

    #[tokio::test]
    async fn a_missing_npm_is_a_spawn_failure_naming_it() {
        let scratch = Scratch::new("missing");
        let failure = NpmBuilder::new("/opt/nowhere/bin/npm", scratch.0.join("cache"))
            .build(&tree(&scratch), "preview")
            .await
            .unwrap_err();
        assert_eq!(failure.step, BuildStep::Install);
        assert!(
            failure.to_string().contains("/opt/nowhere/bin/npm"),
            "{failure}"
        );
    }
}
