//! site-build's build runner: the source of one exact commit fetched as
//! GitHub serves it (a tarball behind a redirect to codeload), then the
//! sample site's real `npm ci` and `npm run build`. No emulator: a GitHub
//! double and an npm registry double on loopback, a real git repository in
//! a temp folder, the machine's own node and npm.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_stack::{GitHubDouble, GitHubOptions, SampleRepo};
use serde_json::{json, Value};
use site_build::build::{
    ArchiveError, BuildStep, FailureCause, GitHubToken, NpmBuilder, SourceError, SourceFetcher,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OWNER: &str = "acme";
const REPO: &str = "sample-site";
const TOKEN: &str = "ghp_test_token_0123456789";

// ---------------------------------------------------------------- scratch

/// A temp folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "site-build-runner-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, path: &str) -> PathBuf {
        self.0.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The machine's npm, found on PATH the way a Lambda layer's would be
/// configured: as a path.
fn npm() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("npm"))
        .find(|path| path.is_file())
        .expect("npm is on PATH (these tests run the real npm)")
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

// ------------------------------------------------------------- git repo

/// A git repository holding the sample site (the local stack's fixture).
fn sample_repo() -> SampleRepo {
    SampleRepo::create(&deployer_e2e::root(), &std::env::temp_dir()).expect("sample repository")
}

// ----------------------------------------------------------- HTTP double

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    fn bytes(content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type", content_type.into())],
            body,
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A loopback HTTP/1.1 server for GET requests: every request is recorded
/// and answered by `handler` (run off the async workers: it may call git),
/// one request per connection.
struct HttpDouble {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpDouble {
    async fn start(handler: Handler) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, handler, recorded).await;
                });
            }
        });
        Self {
            base,
            requests,
            server,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn forget_requests(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for HttpDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    recorded: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte[..1]).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let request = Request { path, headers };
    recorded.lock().unwrap().push(request.clone());
    let response = tokio::task::spawn_blocking(move || handler(&request))
        .await
        .unwrap();
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

// --------------------------------------------------------- GitHub double

/// The local stack's GitHub double over `repo`, requiring [`TOKEN`]:
/// `/repos/acme/sample-site/tarball/{sha}` answers 302 to its codeload (on
/// another port: another origin, as on GitHub), which answers with
/// `git archive` of the commit. `planted` replaces the archive of one
/// commit id.
async fn github(repo: &SampleRepo, planted: Option<(String, Vec<u8>)>) -> GitHubDouble {
    let github = GitHubDouble::start(GitHubOptions {
        repository: format!("{OWNER}/{REPO}"),
        repo_dir: Some(repo.dir.clone()),
        token: Some(TOKEN.to_owned()),
    })
    .await
    .unwrap();
    if let Some((sha, archive)) = planted {
        github.plant(&sha, archive);
    }
    github
}

fn fetcher(github: &GitHubDouble, token: &str) -> SourceFetcher {
    SourceFetcher::new(&github.api_url, Some(GitHubToken::new(token).unwrap())).unwrap()
}

// ------------------------------------------------------ npm registry double

/// A registry holding one package, `site-greeting@1.0.0`, packed by npm.
struct RegistryDouble {
    http: HttpDouble,
}

impl RegistryDouble {
    async fn start(scratch: &Scratch) -> Self {
        let package = scratch.join("site-greeting");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(
            package.join("package.json"),
            json!({"name": "site-greeting", "version": "1.0.0", "type": "module", "main": "index.js"})
                .to_string(),
        )
        .unwrap();
        std::fs::write(
            package.join("index.js"),
            "export const greeting = \"Hello from the registry\";\n",
        )
        .unwrap();
        let packed: Value = serde_json::from_str(&run(
            &package,
            "npm",
            &[
                "pack",
                "--json",
                "--cache",
                &scratch.join("pack-cache").display().to_string(),
            ],
        ))
        .unwrap();
        let tarball = std::fs::read(package.join(packed[0]["filename"].as_str().unwrap())).unwrap();
        let integrity = packed[0]["integrity"].as_str().unwrap().to_owned();
        let shasum = packed[0]["shasum"].as_str().unwrap().to_owned();

        let base = Arc::new(Mutex::new(String::new()));
        let base_for_handler = base.clone();
        let http = HttpDouble::start(Arc::new(move |request: &Request| {
            let base = base_for_handler.lock().unwrap().clone();
            match request.path.as_str() {
                "/site-greeting" => Response::json(
                    200,
                    json!({
                        "name": "site-greeting",
                        "dist-tags": {"latest": "1.0.0"},
                        "versions": {"1.0.0": {
                            "name": "site-greeting",
                            "version": "1.0.0",
                            "dist": {
                                "tarball": format!("{base}/site-greeting/-/site-greeting-1.0.0.tgz"),
                                "integrity": integrity,
                                "shasum": shasum,
                            }
                        }}
                    }),
                ),
                "/site-greeting/-/site-greeting-1.0.0.tgz" => {
                    Response::bytes("application/octet-stream", tarball.clone())
                }
                _ => Response::json(404, json!({"error": "Not found"})),
            }
        }))
        .await;
        *base.lock().unwrap() = http.base.clone();
        Self { http }
    }
}

// -------------------------------------------------------------- helpers

/// A gzip-compressed tar of `entries`, names written raw (no checks), as
/// a hostile server would send them.
fn hostile_tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in entries {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[148..156].copy_from_slice(b"        ");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&header);
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gzip = Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    gzip.stdin.take().unwrap().write_all(&tar).unwrap();
    let output = gzip.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `dist/assets/app.<8 hex>.<extension>`, the one there is.
fn fingerprinted(output: &Path, extension: &str) -> String {
    let names: Vec<String> = std::fs::read_dir(output.join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            let Some(hash) = name
                .strip_prefix("app.")
                .and_then(|rest| rest.strip_suffix(&format!(".{extension}")))
            else {
                return false;
            };
            hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

fn dir_is_non_empty(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exact_commit_is_fetched_even_after_the_branch_moved_on() {
    let repo = sample_repo();
    let first = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("src/index.html", "      <h1>Second commit</h1>\n")
        .unwrap();
    repo.write("src/news.html", "      <p>new page</p>\n")
        .unwrap();
    let second = repo.commit("second commit").unwrap();
    let github = github(&repo, None).await;
    let fetcher = fetcher(&github, TOKEN);
    let scratch = Scratch::new("exact");

    let tree = fetcher
        .fetch(&format!("{OWNER}/{REPO}"), &first, &scratch.join("first"))
        .await
        .unwrap();
    assert_eq!(tree.commit, first);
    assert_eq!(tree.repository, "acme/sample-site");
    assert!(tree.root.join("package.json").is_file());
    assert!(tree.root.join("build.mjs").is_file());
    assert!(
        !tree.root.join("src/news.html").exists(),
        "the later commit leaked in"
    );
    assert!(read(&tree.root.join("src/index.html")).contains("Sample site"));

    // An abbreviated id resolves to its full commit.
    let later = fetcher
        .fetch(
            &format!("{OWNER}/{REPO}"),
            &second[..12],
            &scratch.join("second"),
        )
        .await
        .unwrap();
    assert_eq!(later.commit, second);
    assert!(later.root.join("src/news.html").is_file());
    assert!(read(&later.root.join("src/index.html")).contains("Second commit"));

    // Through the redirect, with the token sent to the API only: codeload
    // is another origin and its URL carries its own.
    let api = github.requests();
    assert_eq!(
        api[0].path,
        format!("/repos/acme/sample-site/tarball/{first}")
    );
    assert_eq!(api[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(api[0].headers["accept"], "application/vnd.github+json");
    assert_eq!(api[0].headers["user-agent"], "deployer-site-build");
    let codeload = github.codeload_requests();
    assert_eq!(codeload.len(), 2);
    assert!(codeload[0].path.contains(&first), "{}", codeload[0].path);
    assert!(codeload
        .iter()
        .all(|r| !r.headers.contains_key("authorization")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_site_builds_with_its_environment_and_reuses_the_npm_cache() {
    let repo = sample_repo();
    let commit = repo.git(&["rev-parse", "HEAD"]).unwrap();
    let github = github(&repo, None).await;
    let fetcher = fetcher(&github, TOKEN);
    let scratch = Scratch::new("sample");
    let builder = NpmBuilder::new(npm(), scratch.join("npm-cache"));

    let mut timings = Vec::new();
    for (round, environment) in ["staging", "production"].into_iter().enumerate() {
        let started = Instant::now();
        let tree = fetcher
            .fetch(
                "acme/sample-site",
                &commit,
                &scratch.join(&format!("tree-{round}")),
            )
            .await
            .unwrap();
        let fetched = started.elapsed();
        let built = builder
            .build(&tree.root, environment)
            .await
            .unwrap_or_else(|failure| panic!("{failure}\n{}", failure.log_tail.join("\n")));
        let total = started.elapsed();
        timings.push((fetched, built.durations, total));

        assert_eq!(
            built.output_dir,
            tree.root.join("dist").canonicalize().unwrap()
        );
        let index = read(&built.output_dir.join("index.html"));
        assert!(
            index.contains(&format!(
                "<meta name=\"deploy-environment\" content=\"{environment}\">"
            )),
            "{index}"
        );
        assert!(read(&built.output_dir.join("about/index.html")).contains(environment));
        let css = fingerprinted(&built.output_dir, "css");
        let js = fingerprinted(&built.output_dir, "js");
        assert!(index.contains(&format!("/assets/{css}")), "{index}");
        assert!(index.contains(&format!("/assets/{js}")), "{index}");
        // The tail shows both steps and the build's own last line.
        let tail = built.log_tail.join("\n");
        assert!(tail.contains("$ npm ci --prefer-offline"), "{tail}");
        assert!(tail.contains("$ npm run build"), "{tail}");
        assert!(
            tail.contains(&format!("built 3 pages for {environment}")),
            "{tail}"
        );
        // npm used the cache folder it was given (its logs go there too).
        assert!(dir_is_non_empty(&scratch.join("npm-cache")));
        // Within the issue's target, end to end.
        assert!(total < Duration::from_secs(120), "{total:?}");
    }
    for (round, (fetched, steps, total)) in timings.iter().enumerate() {
        let cache = if round == 0 { "cold" } else { "warm" };
        eprintln!(
            "sample site, {cache} npm cache: fetch {fetched:?}, npm ci {:?}, npm run build {:?}, total {total:?}",
            steps.install, steps.build
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_installs_without_asking_the_registry() {
    let scratch = Scratch::new("registry");
    let registry = RegistryDouble::start(&scratch).await;
    // A site that needs a package, as a devDependency (where build tools
    // usually are: NODE_ENV=production must not drop them).
    let site = scratch.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("package.json"),
        json!({
            "name": "greeting-site",
            "version": "1.0.0",
            "private": true,
            "type": "module",
            "scripts": {"build": "node build.mjs"},
            "devDependencies": {"site-greeting": "1.0.0"}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        site.join("build.mjs"),
        r#"import { mkdirSync, writeFileSync } from "node:fs";
import { greeting } from "site-greeting";
mkdirSync("dist", { recursive: true });
writeFileSync("dist/index.html", `<p>${greeting} (${process.env.PUBLIC_ENV})</p>`);
console.log("built");
"#,
    )
    .unwrap();
    // The project's own .npmrc names its registry, as a site on a private
    // registry would (and whatever the machine's user config says).
    std::fs::write(
        site.join(".npmrc"),
        format!("registry={}/\n", registry.http.base),
    )
    .unwrap();
    run(
        &site,
        "npm",
        &[
            "install",
            "--package-lock-only",
            "--no-audit",
            "--no-fund",
            "--cache",
            &scratch.join("lock-cache").display().to_string(),
        ],
    );

    let cache = scratch.join("npm-cache");
    let builder = NpmBuilder::new(npm(), &cache);
    let mut timings = Vec::new();
    for round in 0..2 {
        registry.http.forget_requests();
        let tree = scratch.join(&format!("tree-{round}"));
        copy_dir(&site, &tree);
        let built = builder
            .build(&tree, "preview")
            .await
            .unwrap_or_else(|failure| panic!("{failure}\n{}", failure.log_tail.join("\n")));
        assert_eq!(
            read(&built.output_dir.join("index.html")),
            "<p>Hello from the registry (preview)</p>"
        );
        let asked: Vec<String> = registry
            .http
            .requests()
            .into_iter()
            .map(|r| r.path)
            .collect();
        if round == 0 {
            assert!(
                asked.iter().any(|path| path.ends_with(".tgz")),
                "a cold cache downloads the package: {asked:?}"
            );
            assert!(dir_is_non_empty(&cache.join("_cacache")));
        } else {
            assert_eq!(asked, Vec::<String>::new(), "a warm cache asks nothing");
        }
        timings.push(built.durations);
    }
    eprintln!(
        "one-package site: npm ci cold {:?}, warm {:?}",
        timings[0].install, timings[1].install
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_names_its_step_and_keeps_the_log_tail() {
    let repo = sample_repo();
    repo.write(
        "build.mjs",
        "console.log(\"building\");\nconsole.error(\"Error: src/layout.html has an unclosed {{title}\");\nprocess.exit(1);\n",
    ).unwrap();
    let broken = repo.commit("break the build").unwrap();
    let github = github(&repo, None).await;
    let scratch = Scratch::new("failing");
    let tree = fetcher(&github, TOKEN)
        .fetch("acme/sample-site", &broken, &scratch.join("tree"))
        .await
        .unwrap();

    let failure = NpmBuilder::new(npm(), scratch.join("npm-cache"))
        .build(&tree.root, "staging")
        .await
        .unwrap_err();
    assert_eq!(failure.step, BuildStep::Build);
    assert_eq!(failure.exit_code(), Some(1));
    assert!(matches!(failure.cause, FailureCause::Exited { code: 1 }));
    assert!(
        failure
            .log_tail
            .iter()
            .any(|line| line == "Error: src/layout.html has an unclosed {{title}"),
        "{:#?}",
        failure.log_tail
    );
    assert!(failure.log_tail.iter().any(|line| line == "building"));
    assert!(failure.log_tail.len() <= 50);
    assert!(failure.durations.install > Duration::ZERO);
    assert_eq!(
        failure.to_string(),
        "npm run build failed: it exited with status 1"
    );
    assert!(!tree.root.join("dist").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarball_with_a_parent_dir_entry_is_refused_and_nothing_is_left() {
    let repo = sample_repo();
    let planted_sha = "e".repeat(40);
    let evil = hostile_tar_gz(&[
        ("acme-sample-site-eeeeeee/package.json", b"{}"),
        ("acme-sample-site-eeeeeee/../../evil", b"pwned"),
    ]);
    let github = github(&repo, Some((planted_sha.clone(), evil))).await;
    let scratch = Scratch::new("evil");
    let into = scratch.join("work/tree");

    let error = fetcher(&github, TOKEN)
        .fetch("acme/sample-site", &planted_sha, &into)
        .await
        .unwrap_err();
    match &error {
        SourceError::Archive {
            repository,
            commit,
            source: ArchiveError::Unsafe { entry, .. },
        } => {
            assert_eq!(repository, "acme/sample-site");
            assert_eq!(commit, &planted_sha);
            assert_eq!(entry, "acme-sample-site-eeeeeee/../../evil");
        }
        other => panic!("expected an unsafe entry, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("acme/sample-site"), "{message}");
    assert!(message.contains(".."), "{message}");
    assert!(!scratch.join("evil").exists());
    assert!(!scratch.join("work/evil").exists());
    assert!(!into.exists(), "the half-unpacked tree is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_unknown_commit_names_repository_commit_and_status() {
    let repo = sample_repo();
    let commit = repo.git(&["rev-parse", "HEAD"]).unwrap();
    let github = github(&repo, None).await;
    let scratch = Scratch::new("refused");

    let error = fetcher(&github, "ghp_wrong")
        .fetch("acme/sample-site", &commit, &scratch.join("a"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::Status { status: 401, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("acme/sample-site"), "{message}");
    assert!(message.contains(&commit), "{message}");
    assert!(message.contains("HTTP 401 (Bad credentials)"), "{message}");
    assert!(!message.contains("ghp_wrong"), "{message}");
    assert!(!scratch.join("a").exists());

    let missing = "0123456789abcdef0123456789abcdef01234567";
    let error = fetcher(&github, TOKEN)
        .fetch("acme/sample-site", missing, &scratch.join("b"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SourceError::Status { status: 404, .. }),
        "{error:?}"
    );
    assert!(message.contains("acme/sample-site"), "{message}");
    assert!(message.contains(missing), "{message}");
    assert!(message.contains("404"), "{message}");

    let error = fetcher(&github, TOKEN)
        .fetch("acme/other-site", &commit, &scratch.join("c"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("acme/other-site") && error.to_string().contains("404"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_another_commit_is_refused() {
    let repo = sample_repo();
    let old = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("src/news.html", "      <p>new page</p>\n")
        .unwrap();
    let asked = repo.commit("second commit").unwrap();
    // A server (or a cache in front of it) that answers with the wrong
    // commit's archive: git records the commit in the archive's header.
    let stale = Command::new("git")
        .args([
            "archive",
            "--format=tar.gz",
            "--prefix=acme-sample-site-0000000/",
            &old,
        ])
        .current_dir(&repo.dir)
        .output()
        .unwrap()
        .stdout;
    let github = github(&repo, Some((asked.clone(), stale))).await;
    let scratch = Scratch::new("stale");

    let error = fetcher(&github, TOKEN)
        .fetch("acme/sample-site", &asked, &scratch.join("tree"))
        .await
        .unwrap_err();
    match &error {
        SourceError::CommitMismatch { commit, found, .. } => {
            assert_eq!(commit, &asked);
            assert_eq!(found, &old);
        }
        other => panic!("expected a commit mismatch, got {other:?}"),
    }
    assert!(!scratch.join("tree").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_times_out_naming_repository_and_commit() {
    let stalled = HttpDouble::start(Arc::new(|_: &Request| {
        std::thread::sleep(Duration::from_secs(3));
        Response::bytes("application/x-gzip", Vec::new())
    }))
    .await;
    let scratch = Scratch::new("stalled");
    let fetcher = SourceFetcher::new(&stalled.base, None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = fetcher
        .fetch("acme/sample-site", "abcdef1", &scratch.join("tree"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, SourceError::TimedOut { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "fetching acme/sample-site at abcdef1 took longer than 300ms"
    );
    // No token configured: no Authorization header at all.
    assert!(!stalled.requests()[0].headers.contains_key("authorization"));
    assert!(!scratch.join("tree").exists());
}
