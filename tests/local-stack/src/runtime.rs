//! A Lambda Runtime API on loopback, serving a function's processes.
//!
//! The real function binary is started with `AWS_LAMBDA_RUNTIME_API` pointing
//! at its own Runtime API, exactly as Lambda starts it. Each process is one
//! execution environment and runs one invocation at a time; a process that
//! dies is started again on the next invocation, like a new cold start.
//! [`Function::serve`] keeps one environment (invocations queue behind each
//! other); [`Function::serve_scaled`] starts another environment whenever
//! all are busy, up to a concurrency limit, as Lambda scales out.
//!
//! Lambda's own faults are made here, outside the function's code: an
//! invocation that runs past the function's timeout is stopped and reported
//! as [`InvokeError::TimedOut`], and [`Function::crash_at_log`] kills the
//! process the moment it writes a chosen log line (a crash, an out-of-memory
//! kill, a full `/tmp`: the process is gone without a word).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

/// How a function is started.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where the function's stdout/stderr go (appended).
    pub log_file: Option<PathBuf>,
    /// Users of its own for each environment (None: this process's user).
    pub sandbox: Option<Sandbox>,
}

/// Execution environments isolated from each other and from everything
/// else here, as Lambda isolates them: environment `i` runs as user
/// `first_uid + i` (so it cannot read another process's `/proc/*/environ`
/// or signal it), with a private temp folder as `TMPDIR` and `HOME`
/// (Lambda's own `/tmp`), emptied whenever its process starts. Needs root
/// to start; [`Sandbox::available`] says whether it can.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub first_uid: u32,
    pub tmp_root: PathBuf,
}

impl Sandbox {
    /// True when this process may start others as another user.
    pub fn available() -> bool {
        // SAFETY: geteuid takes nothing and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn uid(&self, index: usize) -> u32 {
        self.first_uid + index as u32
    }

    fn tmp(&self, index: usize) -> PathBuf {
        self.tmp_root.join(format!("env-{index}"))
    }

    /// An empty private temp folder owned by the environment's user.
    fn fresh_tmp(&self, index: usize) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.tmp(index);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&self.tmp_root, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let uid = self.uid(index);
        std::os::unix::fs::chown(&dir, Some(uid), Some(uid))
            .with_context(|| format!("giving {} to user {uid}", dir.display()))?;
        Ok(dir)
    }
}

/// Why an invocation did not return a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The handler returned an error (Lambda's "Unhandled" function error).
    #[error("{error_type}: {message}")]
    Function { error_type: String, message: String },
    /// The runtime failed to initialise.
    #[error("init error: {message}")]
    Init { message: String },
    /// The process exited (or was killed) during the invocation.
    #[error("runtime crashed: {message}")]
    Crashed { message: String },
    /// The invocation ran past the function's timeout and was stopped.
    #[error("Task timed out after {:.2} seconds", after.as_secs_f64())]
    TimedOut { after: Duration },
}

/// A crash waiting for its log line.
#[derive(Debug, Clone)]
struct CrashRule {
    pattern: String,
    remaining: u32,
}

/// The Lambda faults armed on a function, shared by its environments.
#[derive(Debug, Default)]
struct LambdaFaults {
    crashes: std::sync::Mutex<Vec<CrashRule>>,
    crashed: AtomicU64,
}

impl LambdaFaults {
    /// True when `line` should kill the process now (and uses up one crash).
    fn crash_on(&self, line: &str) -> bool {
        let mut crashes = self.crashes.lock().expect("lambda faults lock");
        let Some(rule) = crashes
            .iter_mut()
            .find(|r| r.remaining > 0 && line.contains(&r.pattern))
        else {
            return false;
        };
        rule.remaining -= 1;
        self.crashed.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// Cold-start figures of the last process start.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartFigures {
    /// From process spawn to its first `GET /invocation/next`.
    pub init: Duration,
    /// Init plus the first invocation, up to its response.
    pub init_and_first_invoke: Option<Duration>,
    /// CPU time the process spent in init, all its threads (Linux
    /// schedstat): what a busy machine does not inflate as it does the
    /// wall-clock figures.
    pub init_cpu: Option<Duration>,
}

struct Invocation {
    id: String,
    payload: Bytes,
    deadline_ms: u64,
}

type Outcome = Result<Bytes, InvokeError>;

struct Shared {
    function_arn: String,
    queue: Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<String>>,
    first_next: Mutex<Option<Instant>>,
    /// The CPU time of the process when it first asked for work.
    first_next_cpu: Mutex<Option<Duration>>,
    /// The running process, for its CPU time.
    pid: Mutex<Option<u32>>,
    /// Invocations a `/next` took for a process that was gone by then, to
    /// go out before the queue's.
    returned: Mutex<std::collections::VecDeque<Invocation>>,
    /// The Runtime API's own port.
    port: u16,
}

/// One function: a pool of execution environments, each a process behind
/// its own Runtime API endpoint.
pub struct Function {
    faults: Arc<LambdaFaults>,
    spec: FunctionSpec,
    region: String,
    arn: String,
    permits: Semaphore,
    environments: Mutex<Vec<Arc<Environment>>>,
    counter: Arc<AtomicU64>,
}

/// One execution environment: a Runtime API endpoint and its process.
struct Environment {
    faults: Arc<LambdaFaults>,
    spec: FunctionSpec,
    /// Its place among the function's environments (its sandbox user).
    index: usize,
    endpoint: String,
    shared: Arc<Shared>,
    sender: mpsc::Sender<Invocation>,
    process: Mutex<Option<(Child, Instant)>>,
    busy: AtomicBool,
    figures: Mutex<StartFigures>,
    /// The process's last lines of output (what Lambda shows for a crash).
    output: Arc<Mutex<std::collections::VecDeque<String>>>,
}

/// Marks an environment free again when the invocation ends (or is dropped).
struct Busy(Arc<Environment>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

const OUTPUT_LINES: usize = 20;

async fn keep_output(
    stream: impl tokio::io::AsyncRead + Unpin,
    mut file: Option<std::fs::File>,
    output: Arc<Mutex<std::collections::VecDeque<String>>>,
    faults: Arc<LambdaFaults>,
    pid: Option<u32>,
) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(file) = file.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        if let Some(pid) = pid.filter(|_| faults.crash_on(&line)) {
            // Nothing in the function gets to run after this line.
            stop_environment(pid);
            if let Some(file) = file.as_mut() {
                let _ = writeln!(
                    file,
                    "[local stack] process {pid} killed at this line (injected crash)"
                );
            }
        }
        let mut kept = output.lock().await;
        if kept.len() == OUTPUT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

impl Function {
    /// Starts the Runtime API of one execution environment; the process
    /// itself starts on first invoke. Invocations run one at a time.
    pub async fn serve(spec: FunctionSpec, region: &str) -> anyhow::Result<Arc<Self>> {
        Self::serve_scaled(spec, region, 1).await
    }

    /// Like [`Function::serve`], but a new execution environment (a new
    /// process, with its own cold start) is started whenever every existing
    /// one is busy, up to `max_concurrency` at once; further invocations wait
    /// for one to become free (where Lambda would throttle).
    pub async fn serve_scaled(
        spec: FunctionSpec,
        region: &str,
        max_concurrency: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let max_concurrency = max_concurrency.max(1);
        let counter = Arc::new(AtomicU64::new(0));
        let arn = format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            crate::account::ACCOUNT_ID,
            spec.name
        );
        let faults = Arc::new(LambdaFaults::default());
        let first = Environment::serve(spec.clone(), &arn, faults.clone(), 0).await?;
        Ok(Arc::new(Self {
            faults,
            spec,
            region: region.to_owned(),
            arn,
            permits: Semaphore::new(max_concurrency),
            environments: Mutex::new(vec![first]),
            counter,
        }))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The function's ARN (unqualified).
    pub fn arn(&self) -> &str {
        &self.arn
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The configured timeout of one invocation.
    pub fn timeout(&self) -> Duration {
        self.spec.timeout
    }

    /// Kills the function's process the moment one of its output lines
    /// contains `pattern`, at most `times` times: a crash at a chosen point,
    /// with no chance to clean up or report.
    pub fn crash_at_log(&self, pattern: &str, times: u32) {
        self.faults
            .crashes
            .lock()
            .expect("lambda faults lock")
            .push(CrashRule {
                pattern: pattern.to_owned(),
                remaining: times,
            });
    }

    /// How many injected crashes have happened.
    pub fn crashes(&self) -> u64 {
        self.faults.crashed.load(Ordering::SeqCst)
    }

    /// A new request id, as Lambda assigns one to each accepted invocation
    /// (kept across the retries of an asynchronous one).
    pub fn new_request_id(&self) -> String {
        format!(
            "{:08x}-local-{:012x}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The Runtime API endpoints (`127.0.0.1:port`) of its environments.
    pub async fn runtime_endpoints(&self) -> Vec<String> {
        self.environments
            .lock()
            .await
            .iter()
            .map(|env| env.endpoint.clone())
            .collect()
    }

    /// How many execution environments have been started so far.
    pub async fn environments(&self) -> usize {
        self.environments.lock().await.len()
    }

    async fn first(&self) -> Arc<Environment> {
        self.environments.lock().await[0].clone()
    }

    /// Process id of the first environment's function process, if started.
    pub async fn pid(&self) -> Option<u32> {
        self.first().await.pid().await
    }

    /// Cold-start figures of the first environment.
    pub async fn figures(&self) -> StartFigures {
        *self.first().await.figures.lock().await
    }

    /// Peak resident memory of the first environment's process in KiB (Linux VmHWM).
    pub async fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.pid().await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Invokes the function synchronously and returns its JSON response.
    pub async fn invoke(&self, payload: &Value) -> Result<Value, InvokeError> {
        self.invoke_as(&self.new_request_id(), payload).await
    }

    /// Invokes the function with a given request id: an asynchronous
    /// invocation's retries keep the id of its first attempt, as on AWS.
    pub async fn invoke_as(&self, request_id: &str, payload: &Value) -> Result<Value, InvokeError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| InvokeError::Crashed {
                message: "function stopped".into(),
            })?;
        let busy = {
            let mut environments = self.environments.lock().await;
            let free = environments.iter().find(|env| {
                env.busy
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            });
            match free {
                Some(env) => Busy(env.clone()),
                None => {
                    // Every environment is busy and a permit is free: scale out.
                    let index = environments.len();
                    let env = Environment::serve(
                        self.spec.clone(),
                        &self.arn,
                        self.faults.clone(),
                        index,
                    )
                    .await
                    .map_err(|e| InvokeError::Init {
                        message: format!("{e:#}"),
                    })?;
                    env.busy.store(true, Ordering::SeqCst);
                    environments.push(env.clone());
                    Busy(env)
                }
            }
        };
        busy.0.invoke(request_id, payload).await
    }

    /// Stops every function process.
    pub async fn stop(&self) {
        for env in self.environments.lock().await.iter() {
            env.stop().await;
        }
    }
}

impl Environment {
    async fn serve(
        spec: FunctionSpec,
        function_arn: &str,
        faults: Arc<LambdaFaults>,
        index: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let (sender, receiver) = mpsc::channel(16);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let endpoint = local.to_string();
        let shared = Arc::new(Shared {
            function_arn: function_arn.to_owned(),
            queue: Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_next: Mutex::new(None),
            first_next_cpu: Mutex::new(None),
            pid: Mutex::new(None),
            returned: Mutex::new(std::collections::VecDeque::new()),
            port: local.port(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        // SAFETY: geteuid takes nothing and cannot fail.
        let own_user = spec
            .sandbox
            .as_ref()
            .map_or_else(|| unsafe { libc::geteuid() }, |sandbox| sandbox.uid(index));
        let app = app.layer(axum::middleware::from_fn(
            move |peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
                  request: axum::extract::Request,
                  next: axum::middleware::Next| async move {
                only_from_user(own_user, local.port(), peer.0, request, next).await
            },
        ));
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        Ok(Arc::new(Self {
            faults,
            spec,
            index,
            endpoint,
            shared,
            sender,
            process: Mutex::new(None),
            busy: AtomicBool::new(false),
            figures: Mutex::new(StartFigures::default()),
            output: Arc::new(Mutex::new(std::collections::VecDeque::new())),
        }))
    }

    async fn pid(&self) -> Option<u32> {
        self.process.lock().await.as_ref().and_then(|(c, _)| c.id())
    }

    async fn ensure_process(&self) -> anyhow::Result<bool> {
        let mut process = self.process.lock().await;
        if let Some((child, _)) = process.as_mut() {
            if child.try_wait()?.is_none() {
                return Ok(false);
            }
        }
        *self.shared.init_error.lock().await = None;
        *self.shared.first_next.lock().await = None;
        *self.shared.first_next_cpu.lock().await = None;
        let mut command = Command::new(&self.spec.binary);
        command.env_clear();
        if let Some(sandbox) = &self.spec.sandbox {
            let tmp = sandbox.fresh_tmp(self.index)?;
            let uid = sandbox.uid(self.index);
            command
                .uid(uid)
                .gid(uid)
                .current_dir(&tmp)
                .env("TMPDIR", &tmp)
                .env("HOME", &tmp);
        }
        command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &self.endpoint)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.spec.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            // A process group of its own, which stopping it kills whole.
            .process_group(0)
            .stdin(std::process::Stdio::null());
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.spec.binary.display()))?;
        let log_file = match &self.spec.log_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening log file {}", path.display()))?,
            ),
            None => None,
        };
        self.output.lock().await.clear();
        let pid = child.id();
        *self.shared.pid.lock().await = pid;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(keep_output(
                stdout,
                log_file.as_ref().and_then(|f| f.try_clone().ok()),
                self.output.clone(),
                self.faults.clone(),
                pid,
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_output(
                stderr,
                log_file,
                self.output.clone(),
                self.faults.clone(),
                pid,
            ));
        }
        *process = Some((child, Instant::now()));
        Ok(true)
    }

    /// Runs one invocation in this environment (the caller holds it busy).
    async fn invoke(&self, request_id: &str, payload: &Value) -> Result<Value, InvokeError> {
        let cold = self.ensure_process().await.map_err(|e| InvokeError::Init {
            message: format!("{e:#}"),
        })?;
        let started = self.process.lock().await.as_ref().map(|(_, at)| *at);
        let id = request_id.to_owned();
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), tx);
        let deadline_ms = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + self.spec.timeout)
            .as_millis() as u64;
        let invocation = Invocation {
            id: id.clone(),
            payload: Bytes::from(payload.to_string()),
            deadline_ms,
        };
        if self.sender.send(invocation).await.is_err() {
            return Err(InvokeError::Crashed {
                message: "runtime API stopped".into(),
            });
        }
        let outcome = self.wait_for(&id, rx).await;
        if cold {
            if let (Some(started), Some(first_next)) =
                (started, *self.shared.first_next.lock().await)
            {
                *self.figures.lock().await = StartFigures {
                    init: first_next.saturating_duration_since(started),
                    init_and_first_invoke: Some(started.elapsed()),
                    init_cpu: *self.shared.first_next_cpu.lock().await,
                };
            }
        }
        let body = outcome?;
        serde_json::from_slice(&body).map_err(|e| InvokeError::Function {
            error_type: "InvalidResponse".into(),
            message: format!("response is not JSON: {e}"),
        })
    }

    async fn wait_for(&self, id: &str, mut rx: oneshot::Receiver<Outcome>) -> Outcome {
        let deadline = Instant::now() + self.spec.timeout;
        loop {
            tokio::select! {
                outcome = &mut rx => {
                    return outcome.unwrap_or_else(|_| Err(InvokeError::Crashed { message: "invocation dropped".into() }));
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if let Some(message) = self.shared.init_error.lock().await.clone() {
                self.abandon(id).await;
                return Err(InvokeError::Init { message });
            }
            let exited = {
                let mut process = self.process.lock().await;
                match process.as_mut() {
                    Some((child, _)) => child.try_wait().ok().flatten(),
                    None => None,
                }
            };
            if let Some(status) = exited {
                self.abandon(id).await;
                // Let the output readers catch the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let tail: Vec<String> = self.output.lock().await.iter().cloned().collect();
                return Err(InvokeError::Crashed {
                    message: format!(
                        "process exited with {status}; last output:\n{}",
                        tail.join("\n")
                    ),
                });
            }
            if Instant::now() > deadline {
                self.abandon(id).await;
                // Lambda stops a timed-out environment; the next call is cold.
                if let Some((mut child, _)) = self.process.lock().await.take() {
                    if let Some(pid) = child.id() {
                        stop_environment(pid);
                    }
                    let _ = child.kill().await;
                }
                return Err(InvokeError::TimedOut {
                    after: self.spec.timeout,
                });
            }
        }
    }

    async fn abandon(&self, id: &str) {
        self.shared.waiting.lock().await.remove(id);
        // Drop an invocation the process never picked up. A `/next` that
        // holds the queue is waiting in it, so nothing is queued: never
        // wait for it (it may wait for ever).
        self.shared
            .returned
            .lock()
            .await
            .retain(|stale| stale.id != id);
        let Ok(mut queue) = self.shared.queue.try_lock() else {
            return;
        };
        while let Ok(stale) = queue.try_recv() {
            if stale.id != id {
                tracing::warn!(id = stale.id, "dropping queued invocation after crash");
            }
        }
    }

    async fn stop(&self) {
        if let Some((mut child, _)) = self.process.lock().await.take() {
            if let Some(pid) = child.id() {
                stop_environment(pid);
            }
            let _ = child.kill().await;
        }
        // Whatever its user left running (a detached daemon) goes with it.
        if let Some(sandbox) = &self.spec.sandbox {
            for pid in site_build::builder::isolated::processes_of_user(sandbox.uid(self.index)) {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = std::fs::remove_dir_all(sandbox.tmp(self.index));
        }
    }
}

/// The Runtime API of an environment answers only its own processes, as
/// Lambda's is reachable only inside its sandbox: a connection from
/// another user's process (a hostile build next door) is refused.
async fn only_from_user(
    own_user: u32,
    port: u16,
    peer: std::net::SocketAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // /proc/net/tcp is read a page at a time, and sockets opening and
    // closing in between can make a read miss a line: a connection not
    // found is looked for again before it counts as no one's.
    let owner = (0..5).find_map(|_| socket_owner(peer.port(), port));
    match owner {
        Some(uid) if uid == own_user => next.run(request).await,
        owner => {
            tracing::warn!(?owner, own_user, %peer, "refused a Runtime API call from another user's process");
            (
                StatusCode::FORBIDDEN,
                "[local stack] this Runtime API answers only its own execution environment\n",
            )
                .into_response()
        }
    }
}

/// The user owning the loopback TCP socket `from_port` -> `to_port`, from
/// /proc/net/tcp.
fn socket_owner(from_port: u16, to_port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{from_port:04X}");
    let remote = format!(":{to_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r) = (fields.get(1)?, fields.get(2)?);
        (l.ends_with(&local) && r.ends_with(&remote))
            .then(|| fields.get(7)?.parse().ok())
            .flatten()
    })
}

/// Whether the loopback connection from `from_port` to `to_port` is still
/// established (its client end, in /proc/net/tcp). A read can miss a line
/// (see [`only_from_user`]), so a connection not found is looked for again.
fn connection_open(from_port: u16, to_port: u16) -> bool {
    let local = format!(":{from_port:04X}");
    let remote = format!(":{to_port:04X}");
    (0..3).any(|_| {
        std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                matches!(
                    (fields.get(1), fields.get(2), fields.get(3)),
                    (Some(l), Some(r), Some(&"01")) if l.ends_with(&local) && r.ends_with(&remote)
                )
            })
        })
    })
}

/// Stops an execution environment as Lambda does: the function's process
/// and every process it started (npm and its children run in process groups
/// of their own, so killing the function's group would miss them). A
/// process that detached itself (double fork) is no longer a descendant and
/// survives: docs/local-stack.md.
fn stop_environment(pid: u32) {
    // Its descendants are found while their parents still live (a child
    // that left the process group is found only so), then its process
    // group is killed: whatever it forks, even in the instant the scan of
    // /proc could miss, is in it.
    let doomed: Vec<u32> = std::iter::once(pid).chain(descendants(pid)).collect();
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    for process in &doomed {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe { libc::kill(*process as libc::pid_t, libc::SIGKILL) };
    }
    // SIGKILL is delivered, not yet acted on: wait (2 s at most) until each
    // has exited, so its sockets are closed once the environment is stopped
    // and a `/next` it left behind is seen to be gone.
    let started = Instant::now();
    while doomed.iter().any(|pid| running(*pid)) && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `pid` exists and has not exited (a zombie has).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Every live process under `pid` (its children, theirs, …), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(child);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(next) = queue.pop() {
        for &child in children.get(&next).into_iter().flatten() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// The CPU time every thread of `pid` has spent so far: the first field of
/// each `/proc/{pid}/task/*/schedstat` (nanoseconds on a CPU).
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

async fn next(
    State(shared): State<Arc<Shared>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    {
        let mut first = shared.first_next.lock().await;
        if first.is_none() {
            *first = Some(Instant::now());
            if let Some(pid) = *shared.pid.lock().await {
                *shared.first_next_cpu.lock().await = process_cpu_time(pid);
            }
        }
    }
    // The process that asked may be gone: killed while it long-polled
    // (stopped, crashed, timed out), which this server does not notice on
    // its own. Such a request must neither hold the queue nor take the
    // next process's invocation to a dead socket.
    let invocation = loop {
        tokio::select! {
            invocation = async {
                if let Some(returned) = shared.returned.lock().await.pop_front() {
                    return Some(returned);
                }
                shared.queue.lock().await.recv().await
            } => break invocation,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if !connection_open(peer.port(), shared.port) {
                    return StatusCode::GONE.into_response();
                }
            }
        }
    };
    if let Some(invocation) = invocation {
        if !connection_open(peer.port(), shared.port) {
            shared.returned.lock().await.push_front(invocation);
            return StatusCode::GONE.into_response();
        }
        return deliver(&shared, invocation);
    }
    StatusCode::GONE.into_response()
}

/// The `/next` answer carrying `invocation`.
fn deliver(shared: &Shared, invocation: Invocation) -> Response {
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&invocation.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&shared.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header(&format!(
            "Root=1-00000000-{:0>24};Sampled=0",
            invocation.id.replace('-', "")
        )),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    match shared.waiting.lock().await.remove(&id) {
        Some(tx) => {
            let _ = tx.send(Ok(body));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let (error_type, message) = parse_error(&body);
    match shared.waiting.lock().await.remove(&id) {
        Some(tx) => {
            let _ = tx.send(Err(InvokeError::Function {
                error_type,
                message,
            }));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let (error_type, message) = parse_error(&body);
    *shared.init_error.lock().await = Some(format!("{error_type}: {message}"));
    StatusCode::ACCEPTED
}

fn parse_error(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("errorType"), field("errorMessage"))
}

/// Finds a binary built into the workspace target directory.
pub fn built_binary(
    target_dir: &std::path::Path,
    profile: &str,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let path = target_dir.join(profile).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!(
            "{} is not built; run `make build` (cargo build --bins) first",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_function::ScriptFunction;
    use serde_json::json;

    #[tokio::test]
    async fn a_function_stopped_while_it_waits_for_work_starts_cold_and_answers() {
        // Stopped while its process long-polls /next (what a cold-start
        // bench does every time): the server never sees that connection
        // close. Each next invocation must reach the new process, not the
        // dead one's /next, and come back.
        let script =
            ScriptFunction::start_with_timeout("restarts", 1, Duration::from_secs(5)).await;
        for n in 0..8 {
            script.function.stop().await;
            let outcome = script.function.invoke(&json!({"n": n})).await;
            assert_eq!(outcome, Ok(json!({"echo": {"n": n}})), "cold start {n}");
        }
    }

    #[tokio::test]
    async fn an_invocation_past_its_timeout_is_stopped_and_reported_as_a_timeout() {
        let script =
            ScriptFunction::start_with_timeout("slow", 1, Duration::from_millis(400)).await;
        let outcome = script.function.invoke(&json!({"sleep": true})).await;
        assert_eq!(
            outcome,
            Err(InvokeError::TimedOut {
                after: Duration::from_millis(400)
            })
        );
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "Task timed out after 0.40 seconds"
        );
        // The environment was stopped: the next invocation is a cold start that works.
        assert_eq!(
            script.function.invoke(&json!({"quick": 1})).await,
            Ok(json!({"echo": {"quick": 1}}))
        );
    }

    #[tokio::test]
    async fn a_crash_at_a_log_line_kills_the_process_before_it_answers() {
        let script = ScriptFunction::start("crashy", 1).await;
        script.function.crash_at_log("reached midway", 1);
        match script.function.invoke(&json!({"midway": true})).await {
            Err(InvokeError::Crashed { message }) => {
                assert!(message.contains("signal: 9"), "{message}");
                assert!(message.contains("reached midway"), "{message}");
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        assert_eq!(script.function.crashes(), 1);
        // One crash was armed: the next invocation runs to the end.
        assert_eq!(
            script.function.invoke(&json!({"midway": true})).await,
            Ok(json!("finished"))
        );
    }

    #[tokio::test]
    async fn a_timed_out_environment_stops_with_every_process_it_started() {
        let script =
            ScriptFunction::start_with_timeout("spawner", 1, Duration::from_millis(600)).await;
        let outcome = script.function.invoke(&json!({"spawn": true})).await;
        assert!(
            matches!(outcome, Err(InvokeError::TimedOut { .. })),
            "{outcome:?}"
        );
        let child: u32 = std::fs::read_to_string(script.dir.join("child.pid"))
            .expect("the function started a child")
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "));
        assert!(!alive, "process {child} outlived its environment");
    }

    #[tokio::test]
    async fn retries_under_one_request_id_reach_the_function_with_that_id() {
        let script = ScriptFunction::start("ids", 1).await;
        let id = script.function.new_request_id();
        script
            .function
            .invoke_as(&id, &json!({"n": 1}))
            .await
            .unwrap();
        script
            .function
            .invoke_as(&id, &json!({"n": 1}))
            .await
            .unwrap();
        script.function.invoke(&json!({"n": 2})).await.unwrap();
        let ids = script.request_ids();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], id);
        assert_eq!(ids[1], id);
        assert_ne!(ids[2], id);
    }
}
