//! A repository's source at one exact commit, without git.
//!
//! Lambda has no git binary, and a clone would bring history a build never
//! reads. GitHub serves any commit as a gzip tarball
//! (`GET /repos/{owner}/{repo}/tarball/{sha}`, answered with a redirect to
//! codeload), and the body is streamed straight into the tar extractor: the
//! archive is never held in memory or written to disk as a whole.
//!
//! Asking for a commit rather than a branch is what makes the build
//! reproducible: a push that lands while a build starts cannot change what
//! that build sees. `git archive` records the commit in the tarball's
//! global header, and a tarball of another commit is refused.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT};
use tokio::sync::mpsc;

use super::extract::{extract, ArchiveError};

/// GitHub's REST API.
pub const DEFAULT_API_BASE: &str = "https://api.github.com";

/// Unpacked bytes a source tree may hold. Lambda's `/tmp` is 512 MB by
/// default and `node_modules` needs room too.
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;

/// Time for the whole download and unpack. With two npm steps of
/// [`DEFAULT_STEP_TIMEOUT`](super::DEFAULT_STEP_TIMEOUT) each, a stuck
/// build still ends within Lambda's 15 minutes, with time left to record it.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) const USER_AGENT: &str = "deployer-site-build";

/// How much of an error response is read for GitHub's `message`.
const ERROR_BODY_LIMIT: usize = 4096;

/// Downloaded chunks waiting for the extractor; a little slack so the
/// download and the disk overlap, and bounded so a slow disk slows the
/// download instead of filling memory.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A GitHub token. It is sent only in the `Authorization` header (marked
/// sensitive) and never printed: not by `Debug`, and it has no `Display`.
#[derive(Clone)]
pub struct GitHubToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a GitHub token must be non-empty visible ASCII without spaces")]
pub struct InvalidToken;

impl GitHubToken {
    pub fn new(token: impl Into<String>) -> Result<Self, InvalidToken> {
        let token = token.into();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidToken);
        }
        Ok(Self(token))
    }

    pub(crate) fn header(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("visible ASCII is a valid header value");
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for GitHubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitHubToken(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("repository {found:?} is not \"owner/name\": {reason}")]
    InvalidRepository { found: String, reason: &'static str },
    #[error("commit {found:?} is not 7 to 64 hex digits (a SHA-1 or SHA-256 commit id, or an abbreviation)")]
    InvalidCommit { found: String },
    #[error("GitHub API base {found:?} is not an http(s) URL")]
    InvalidApiBase { found: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot use {path} as the work directory: {reason}")]
    WorkDir { path: PathBuf, reason: String },
    #[error("fetching {repository} at {commit} failed: {source}")]
    Request {
        repository: String,
        commit: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "fetching {repository} at {commit}: GitHub answered HTTP {status}{}{}",
        .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
        status_hint(*.status)
    )]
    Status {
        repository: String,
        commit: String,
        status: u16,
        /// GitHub's `message`, or the start of the body.
        message: Option<String>,
    },
    #[error("fetching {repository} at {commit} took longer than {after:?}")]
    TimedOut {
        repository: String,
        commit: String,
        after: Duration,
    },
    #[error("the archive of {repository} at {commit}: {source}")]
    Archive {
        repository: String,
        commit: String,
        #[source]
        source: ArchiveError,
    },
    #[error("asked for {repository} at {commit}, but the archive is of commit {found}")]
    CommitMismatch {
        repository: String,
        commit: String,
        found: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => ": the token was refused",
        // GitHub answers 404, not 403, for private repositories a token cannot see.
        404 => ": no such repository or commit, or the token cannot see it",
        _ => "",
    }
}

/// A source tree on disk, unpacked from the archive of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    /// The work directory; the repository's root, `package.json` and all.
    pub root: PathBuf,
    /// `owner/name`.
    pub repository: String,
    /// The full commit id when the archive records it (GitHub's do),
    /// otherwise the id as asked for, lowercased.
    pub commit: String,
    pub files: usize,
    pub symlinks: usize,
    /// Bytes of file content unpacked.
    pub bytes: u64,
}

/// Fetches source trees from GitHub, or anything that speaks its tarball
/// API. Build one per process: the HTTP client keeps its connections.
#[derive(Debug, Clone)]
pub struct SourceFetcher {
    http: reqwest::Client,
    api_base: String,
    token: Option<GitHubToken>,
    max_bytes: u64,
    timeout: Duration,
}

/// `api_base` is an absolute http(s) URL with a host (checked when the
/// configuration is read, and by [`SourceFetcher::new`]).
pub fn check_api_base(api_base: &str) -> Result<(), SourceError> {
    let valid = reqwest::Url::parse(api_base.trim_end_matches('/'))
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
    if valid {
        Ok(())
    } else {
        Err(SourceError::InvalidApiBase {
            found: api_base.chars().take(200).collect(),
        })
    }
}

impl SourceFetcher {
    /// `api_base` is `https://api.github.com` for GitHub, or
    /// `https://{host}/api/v3` for GitHub Enterprise Server.
    pub fn new(api_base: &str, token: Option<GitHubToken>) -> Result<Self, SourceError> {
        check_api_base(api_base)?;
        let trimmed = api_base.trim_end_matches('/');
        let http = notify::https::client_builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // reqwest drops `Authorization` when a redirect changes host,
            // so GitHub's token does not travel to codeload (whose URL
            // carries its own short-lived one).
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(SourceError::Client)?;
        Ok(Self {
            http,
            api_base: trimmed.to_owned(),
            token,
            max_bytes: DEFAULT_MAX_SOURCE_BYTES,
            timeout: DEFAULT_FETCH_TIMEOUT,
        })
    }

    /// Caps the unpacked size of a source tree.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Caps the time of one fetch, download and unpack together.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time one fetch may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Unpacks `repository` (`owner/name`) at `commit` (7 to 64 hex digits;
    /// prefer the full id) into `into`, which must not exist or be an empty
    /// directory. On any error `into` is removed again, so a half-unpacked
    /// tree is never built.
    pub async fn fetch(
        &self,
        repository: &str,
        commit: &str,
        into: &Path,
    ) -> Result<SourceTree, SourceError> {
        let (owner, name) = parse_repository(repository)?;
        let commit = parse_commit(commit)?;
        prepare_work_dir(into)?;
        let result = self.fetch_into(owner, name, &commit, into).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(into);
        }
        result
    }

    /// The gzip-compressed tarball of `repository` at `commit`, in memory,
    /// for a build that unpacks it elsewhere ([`unpack`]): at most
    /// `max_bytes` of it, within the fetch timeout.
    pub async fn archive(&self, repository: &str, commit: &str) -> Result<Vec<u8>, SourceError> {
        let (owner, name) = parse_repository(repository)?;
        let commit = parse_commit(commit)?;
        let repository = format!("{owner}/{name}");
        let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let max_bytes = self.max_bytes;
        let collector = tokio::spawn(async move {
            let mut archive = Vec::new();
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk?;
                if (archive.len() + chunk.len()) as u64 > max_bytes {
                    return Err(io::Error::other(format!(
                        "the archive is larger than {max_bytes} bytes"
                    )));
                }
                archive.extend_from_slice(&chunk);
            }
            Ok(archive)
        });
        let url = format!("{}/repos/{owner}/{name}/tarball/{commit}", self.api_base);
        let downloaded =
            tokio::time::timeout(self.timeout, self.download(&url, &repository, &commit, tx)).await;
        let collected = collector.await.map_err(|join| SourceError::WorkDir {
            path: PathBuf::from("<memory>"),
            reason: format!("the download task failed: {join}"),
        })?;
        match downloaded {
            Err(_) => Err(SourceError::TimedOut {
                repository,
                commit,
                after: self.timeout,
            }),
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => collected.map_err(|e| SourceError::Archive {
                repository,
                commit,
                source: ArchiveError::Read(e),
            }),
        }
    }

    async fn fetch_into(
        &self,
        owner: &str,
        name: &str,
        commit: &str,
        into: &Path,
    ) -> Result<SourceTree, SourceError> {
        let repository = format!("{owner}/{name}");
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let root = into.to_path_buf();
        let max_bytes = self.max_bytes;
        let extractor =
            tokio::task::spawn_blocking(move || extract(ChannelReader::new(rx), &root, max_bytes));

        let url = format!("{}/repos/{owner}/{name}/tarball/{commit}", self.api_base);
        let downloaded =
            tokio::time::timeout(self.timeout, self.download(&url, &repository, commit, tx)).await;
        // The sender is gone now, so the extractor sees the end of the
        // stream (or the error sent into it) and finishes.
        let extracted = extractor.await.map_err(|join| SourceError::WorkDir {
            path: into.to_path_buf(),
            reason: format!("the unpacking task failed: {join}"),
        })?;
        match downloaded {
            Err(_) => {
                return Err(SourceError::TimedOut {
                    repository,
                    commit: commit.to_owned(),
                    after: self.timeout,
                })
            }
            Ok(Err(error)) => return Err(error),
            Ok(Ok(())) => {}
        }
        source_tree(repository, commit, into, extracted)
    }

    /// Streams the tarball into `tx`. Stops quietly when the extractor
    /// hangs up (it failed, and says why itself).
    async fn download(
        &self,
        url: &str,
        repository: &str,
        commit: &str,
        tx: mpsc::Sender<io::Result<Vec<u8>>>,
    ) -> Result<(), SourceError> {
        let request_error = |source: reqwest::Error| SourceError::Request {
            repository: repository.to_owned(),
            commit: commit.to_owned(),
            // codeload's URL carries a token of its own.
            source: source.without_url(),
        };
        let mut request = self
            .http
            .get(url)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.header(reqwest::header::AUTHORIZATION, token.header());
        }
        let mut response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                repository: repository.to_owned(),
                commit: commit.to_owned(),
                status: status.as_u16(),
                message: error_message(&mut response).await,
            });
        }
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk.to_vec())).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    let _ = tx
                        .send(Err(io::Error::other("the download broke off")))
                        .await;
                    return Err(request_error(error));
                }
            }
        }
    }
}

/// Unpacks `archive` (what [`SourceFetcher::archive`] fetched for
/// `repository` at `commit`) into `into`, which must not exist or be empty,
/// with the checks of [`SourceFetcher::fetch`]: at most `max_bytes`
/// unpacked, and the archive must be of the commit asked for. Blocking.
pub fn unpack(
    archive: &[u8],
    repository: &str,
    commit: &str,
    into: &Path,
    max_bytes: u64,
) -> Result<SourceTree, SourceError> {
    let (owner, name) = parse_repository(repository)?;
    let commit = parse_commit(commit)?;
    prepare_work_dir(into)?;
    let extracted = extract(archive, into, max_bytes);
    let result = source_tree(format!("{owner}/{name}"), &commit, into, extracted);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    result
}

/// What an unpacking wrote, checked against the commit asked for.
fn source_tree(
    repository: String,
    commit: &str,
    into: &Path,
    extracted: Result<super::extract::Extracted, ArchiveError>,
) -> Result<SourceTree, SourceError> {
    let extracted = extracted.map_err(|source| SourceError::Archive {
        repository: repository.clone(),
        commit: commit.to_owned(),
        source,
    })?;
    if let Some(found) = &extracted.commit {
        if !found.starts_with(commit) {
            return Err(SourceError::CommitMismatch {
                repository,
                commit: commit.to_owned(),
                found: found.clone(),
            });
        }
    }
    Ok(SourceTree {
        root: into.to_path_buf(),
        repository,
        commit: extracted.commit.unwrap_or_else(|| commit.to_owned()),
        files: extracted.files,
        symlinks: extracted.symlinks,
        bytes: extracted.bytes,
    })
}

/// GitHub's `{"message": ...}`, or the start of whatever else came back.
async fn error_message(response: &mut reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let message: String = message.trim().chars().take(200).collect();
    (!message.is_empty()).then_some(message)
}

/// `owner/name`, with only the characters GitHub allows, so both parts go
/// into a URL path as they are.
fn parse_repository(repository: &str) -> Result<(&str, &str), SourceError> {
    let reject = |reason| SourceError::InvalidRepository {
        found: repository.chars().take(200).collect(),
        reason,
    };
    let (owner, name) = repository
        .split_once('/')
        .ok_or_else(|| reject("there is no '/'"))?;
    for part in [owner, name] {
        if part.is_empty() || part.len() > 100 {
            return Err(reject("the owner and the name are 1 to 100 characters"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(reject(
                "only ASCII letters, digits, '-', '_' and '.' are allowed, with one '/'",
            ));
        }
        if part.starts_with(['.', '-']) {
            return Err(reject("a part starts with '.' or '-'"));
        }
    }
    Ok((owner, name))
}

fn parse_commit(commit: &str) -> Result<String, SourceError> {
    if !(7..=64).contains(&commit.len()) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SourceError::InvalidCommit {
            found: commit.chars().take(80).collect(),
        });
    }
    Ok(commit.to_ascii_lowercase())
}

/// Creates `into`, or accepts it empty: never unpacks over another tree.
fn prepare_work_dir(into: &Path) -> Result<(), SourceError> {
    let fail = |reason: String| SourceError::WorkDir {
        path: into.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(into) {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = std::fs::read_dir(into).map_err(|e| fail(e.to_string()))?;
            if entries.next().is_some() {
                return Err(fail("it is not empty".into()));
            }
            Ok(())
        }
        Ok(_) => Err(fail("it exists and is not a directory".into())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(into).map_err(|e| fail(e.to_string()))
        }
        Err(error) => Err(fail(error.to_string())),
    }
}

/// The download, read synchronously by the extractor.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let token = GitHubToken::new("ghp_supersecret").unwrap();
        let fetcher = SourceFetcher::new(DEFAULT_API_BASE, Some(token.clone())).unwrap();
        assert_eq!(format!("{token:?}"), "GitHubToken(<redacted>)");
        assert!(!format!("{fetcher:?}").contains("supersecret"));
        assert!(token.header().is_sensitive());
        assert!(GitHubToken::new("").is_err());
        assert!(GitHubToken::new("a b").is_err());
        assert!(GitHubToken::new("a\nb").is_err());
    }

    #[test]
    fn repositories_must_be_owner_slash_name() {
        assert_eq!(
            parse_repository("acme/site.v2").unwrap(),
            ("acme", "site.v2")
        );
        for bad in [
            "",
            "acme",
            "acme/",
            "/site",
            "acme/site/x",
            "acme/..",
            "../site",
            "acme/si te",
            "acme/site?x=1",
            "acme/site#x",
            "acme/%2e%2e",
        ] {
            assert!(
                matches!(
                    parse_repository(bad),
                    Err(SourceError::InvalidRepository { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn commits_are_7_to_64_hex_digits_lowercased() {
        assert_eq!(parse_commit("ABCDEF1").unwrap(), "abcdef1");
        assert_eq!(parse_commit(&"a".repeat(40)).unwrap(), "a".repeat(40));
        assert_eq!(parse_commit(&"b".repeat(64)).unwrap(), "b".repeat(64));
        for bad in ["", "abcdef", &"a".repeat(65), "main", "abcdefg", "../../x"] {
            let error = parse_commit(bad).unwrap_err();
            assert!(
                matches!(error, SourceError::InvalidCommit { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_api_base_must_be_an_http_url() {
        for good in [
            "https://api.github.com",
            "https://api.github.com/",
            "http://127.0.0.1:8080",
            "https://ghe.example.com/api/v3",
        ] {
            let fetcher = SourceFetcher::new(good, None).unwrap();
            assert!(!fetcher.api_base.ends_with('/'), "{good}");
        }
        for bad in ["", "api.github.com", "ftp://x", "file:///etc"] {
            assert!(
                matches!(
                    SourceFetcher::new(bad, None),
                    Err(SourceError::InvalidApiBase { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_status_error_names_repository_commit_status_and_hint() {
        let error = SourceError::Status {
            repository: "acme/site".into(),
            commit: "abc1234".into(),
            status: 404,
            message: Some("Not Found".into()),
        };
        assert_eq!(
            error.to_string(),
            "fetching acme/site at abc1234: GitHub answered HTTP 404 (Not Found): \
             no such repository or commit, or the token cannot see it"
        );
    }

    #[test]
    fn the_work_directory_must_be_new_or_empty() {
        let base = std::env::temp_dir().join(format!("site-build-workdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let fresh = base.join("a/b");
        prepare_work_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare_work_dir(&fresh).unwrap();
        std::fs::write(fresh.join("leftover"), "x").unwrap();
        assert!(matches!(
            prepare_work_dir(&fresh),
            Err(SourceError::WorkDir { .. })
        ));
        assert!(matches!(
            prepare_work_dir(&fresh.join("leftover")),
            Err(SourceError::WorkDir { .. })
        ));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
