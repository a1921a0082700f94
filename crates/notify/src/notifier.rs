use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{redirect, Client, StatusCode};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::source::resolve;
use crate::{slack_payload, webhook_payload, Notice, NotifyError, SecretSource, SecretUrl, Target};

/// How long one post may take, connection included, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Enough of an error body to show Slack's reason (`invalid_blocks`, `no_service`).
const ERROR_BODY_MAX_CHARS: usize = 200;

/// What one [`Notifier::send`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    pub sent: usize,
    pub failed: usize,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Which payload a target configured by a secret gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Slack,
    Webhook,
}

impl TargetKind {
    fn target(self, url: SecretUrl) -> Target {
        match self {
            Self::Slack => Target::Slack(url),
            Self::Webhook => Target::Webhook(url),
        }
    }
}

/// Where the targets come from.
#[derive(Debug)]
enum Pending {
    Targets(Vec<Target>),
    /// Read from SSM (or given) on the first send.
    Secrets {
        sources: Vec<(TargetKind, SecretSource)>,
        ssm: aws_sdk_ssm::Client,
    },
}

/// The targets and the HTTP client, once the first send has made them
/// (a notifier with no targets never makes them: no TLS setup).
#[derive(Debug)]
struct Ready {
    client: Client,
    targets: Vec<Target>,
}

#[derive(Debug)]
struct Inner {
    pending: Pending,
    ready: OnceCell<Ready>,
    counters: Counters,
    timeout: Duration,
}

/// Posts notices to every configured target. Build it once per cold start;
/// clones share the HTTP client and the counters.
///
/// Nothing is set up until the first send: the secrets it is configured
/// with are read then, and the HTTP client (TLS roots and all) is built
/// then, so an invocation that sends nothing pays for neither. A failure
/// to set up is logged and counted as failed posts, and the next send
/// tries again.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// A notifier whose posts each give up after [`DEFAULT_TIMEOUT`].
    pub fn new(targets: Vec<Target>) -> Self {
        Self::with_timeout(targets, DEFAULT_TIMEOUT)
    }

    /// A notifier whose posts each give up after `timeout` (connecting is
    /// capped at 2 s, or at `timeout` if that is shorter).
    pub fn with_timeout(targets: Vec<Target>, timeout: Duration) -> Self {
        Self::pending(Pending::Targets(targets), timeout)
    }

    /// A notifier whose targets' URLs are secrets, read on the first send
    /// (all of them in one GetParameters call).
    pub fn from_secrets(
        sources: Vec<(TargetKind, SecretSource)>,
        ssm: aws_sdk_ssm::Client,
    ) -> Self {
        Self::pending(Pending::Secrets { sources, ssm }, DEFAULT_TIMEOUT)
    }

    /// A notifier with no targets: `send` does nothing and reports nothing sent.
    pub fn disabled() -> Self {
        Self::new(Vec::new())
    }

    fn pending(pending: Pending, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                pending,
                ready: OnceCell::new(),
                counters: Counters::default(),
                timeout,
            }),
        }
    }

    /// How many targets are configured (before their secrets are read).
    pub fn configured(&self) -> usize {
        match &self.inner.pending {
            Pending::Targets(targets) => targets.len(),
            Pending::Secrets { sources, .. } => sources.len(),
        }
    }

    /// Posts `notice` to every target at once. Failures are logged with the
    /// target's redacted URL and counted; they are never returned.
    pub async fn send(&self, notice: &Notice) -> Delivery {
        if self.configured() == 0 {
            return Delivery::default();
        }
        let ready = match self.inner.ready.get_or_try_init(|| self.prepare()).await {
            Ok(ready) => ready,
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    outcome = %notice.outcome,
                    "notifications not delivered: they could not be set up"
                );
                return self.count(Delivery {
                    sent: 0,
                    failed: self.configured(),
                });
            }
        };
        let client = &ready.client;
        let slack = slack_payload(notice);
        let webhook = webhook_payload(notice);
        let timeout = self.inner.timeout;
        let posts = ready.targets.iter().map(|target| {
            let body = match target {
                Target::Slack(_) => &slack,
                Target::Webhook(_) => &webhook,
            };
            async move {
                let result = post(client, target, body, timeout).await;
                if let Err(failure) = &result {
                    tracing::warn!(
                        kind = target.kind(),
                        url = %target.url(),
                        error = %failure,
                        outcome = %notice.outcome,
                        "notification not delivered"
                    );
                }
                result.is_ok()
            }
        });
        let results = join_all(posts).await;

        let sent = results.iter().filter(|ok| **ok).count();
        self.count(Delivery {
            sent,
            failed: results.len() - sent,
        })
    }

    fn count(&self, delivery: Delivery) -> Delivery {
        let counters = &self.inner.counters;
        counters
            .sent
            .fetch_add(delivery.sent as u64, Ordering::Relaxed);
        counters
            .failed
            .fetch_add(delivery.failed as u64, Ordering::Relaxed);
        delivery
    }

    /// The targets (their secrets read) and the client; `send` asks only
    /// when there are targets.
    async fn prepare(&self) -> Result<Ready, NotifyError> {
        let targets = match &self.inner.pending {
            Pending::Targets(targets) => targets.clone(),
            Pending::Secrets { sources, ssm } => {
                let wanted: Vec<Option<&SecretSource>> =
                    sources.iter().map(|(_, source)| Some(source)).collect();
                let urls = resolve(&wanted, ssm).await?;
                let mut targets = Vec::with_capacity(sources.len());
                for ((kind, _), url) in sources.iter().zip(urls) {
                    if let Some(url) = url {
                        targets.push(kind.target(SecretUrl::new(url)?));
                    }
                }
                targets
            }
        };
        let timeout = self.inner.timeout;
        let client = crate::https::client_builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            // A redirected POST turns into a GET and would "succeed"
            // without delivering anything; treat it as the failure it is.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Ready { client, targets })
    }

    /// Cumulative `(sent, failed)` posts since this notifier was built.
    pub fn stats(&self) -> (u64, u64) {
        let counters = &self.inner.counters;
        (
            counters.sent.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
        )
    }
}

/// Why one post failed. Its text never holds the URL: reqwest puts the full
/// URL, secret and all, into its errors, so it is stripped here.
#[derive(Debug, thiserror::Error)]
enum PostFailure {
    #[error("HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The error and its causes, joined: the log line shows why (refused,
    /// DNS, TLS), not just "error sending request".
    #[error("request failed: {0}")]
    Request(String),
}

impl PostFailure {
    fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Self {
        if err.is_timeout() {
            Self::Timeout(timeout)
        } else {
            let err = err.without_url();
            let mut text = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(err) = cause {
                text.push_str(": ");
                text.push_str(&err.to_string());
                cause = err.source();
            }
            Self::Request(text)
        }
    }
}

async fn post(
    client: &Client,
    target: &Target,
    body: &Value,
    timeout: Duration,
) -> Result<(), PostFailure> {
    let response = client
        .post(target.url().expose())
        .json(body)
        .send()
        .await
        .map_err(|err| PostFailure::from_reqwest(err, timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The body only explains the failure; not being able to read it changes nothing.
    let body = response.text().await.unwrap_or_default();
    Err(PostFailure::Status {
        status,
        body: body.chars().take(ERROR_BODY_MAX_CHARS).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::post;
    use axum::Router;
    use serde_json::json;

    use super::*;
    use crate::{Outcome, SecretUrl};

    /// A local HTTP sink that parses every body as JSON and keeps it.
    #[derive(Clone, Default)]
    struct Sink {
        received: Arc<Mutex<Vec<(String, Value)>>>,
    }

    impl Sink {
        async fn start() -> (Self, String) {
            let sink = Self::default();
            let app = Router::new()
                .route("/ok/{*secret}", post(ok))
                .route("/fail/{*secret}", post(fail))
                .route("/hang/{*secret}", post(hang))
                .with_state(sink.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (sink, base)
        }

        fn record(&self, route: &str, body: &Bytes) -> StatusCode {
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => {
                    self.received
                        .lock()
                        .unwrap()
                        .push((route.to_owned(), value));
                    StatusCode::OK
                }
                Err(_) => StatusCode::BAD_REQUEST,
            }
        }

        fn received(&self) -> Vec<(String, Value)> {
            self.received.lock().unwrap().clone()
        }
    }

    async fn ok(State(sink): State<Sink>, body: Bytes) -> StatusCode {
        sink.record("ok", &body)
    }

    async fn fail(State(sink): State<Sink>, body: Bytes) -> (StatusCode, &'static str) {
        sink.record("fail", &body);
        (StatusCode::INTERNAL_SERVER_ERROR, "invalid_blocks")
    }

    async fn hang(State(sink): State<Sink>, body: Bytes) -> StatusCode {
        sink.record("hang", &body);
        tokio::time::sleep(Duration::from_secs(60)).await;
        StatusCode::OK
    }

    fn slack(base: &str, route: &str) -> Target {
        Target::Slack(SecretUrl::new(format!("{base}/{route}/T000/B000/XXXXSECRET")).unwrap())
    }

    fn webhook(base: &str, route: &str) -> Target {
        Target::Webhook(SecretUrl::new(format!("{base}/{route}/hook?token=XXXXSECRET")).unwrap())
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn awkward_reason_text_arrives_intact() {
        let (sink, base) = Sink::start().await;
        let notifier = Notifier::new(vec![slack(&base, "ok"), webhook(&base, "ok")]);
        let reason = "Resource said \"no\"\nsecond line <tag> & co\ttab";
        let notice = Notice::new(Outcome::Failed, "Deploy \"api\" failed", "prd")
            .with_service("api")
            .with_reason(reason);

        let delivery = notifier.send(&notice).await;

        assert_eq!(delivery, Delivery { sent: 2, failed: 0 });
        let received = sink.received();
        let slack = received
            .iter()
            .map(|(_, body)| body)
            .find(|body| body.get("attachments").is_some())
            .expect("slack body");
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains(reason), "{text}");
        assert_eq!(
            slack["attachments"][0]["blocks"][2]["text"],
            json!({
                "type": "mrkdwn",
                "text": "*Reason*\nResource said \"no\"\nsecond line &lt;tag&gt; &amp; co\ttab",
            })
        );
        assert_eq!(
            slack["attachments"][0]["blocks"][0]["text"]["text"],
            "Deploy \"api\" failed"
        );
        let hook = received
            .iter()
            .map(|(_, body)| body)
            .find(|body| body.get("outcome").is_some())
            .expect("webhook body");
        assert_eq!(hook["reason"], reason);
        assert_eq!(hook["outcome"], "failed");
    }

    #[tokio::test]
    async fn a_target_answering_500_counts_as_failed() {
        let (sink, base) = Sink::start().await;
        let notifier = Notifier::new(vec![slack(&base, "fail"), webhook(&base, "ok")]);

        let delivery = notifier
            .send(&Notice::new(Outcome::Info, "hello", "dev"))
            .await;

        assert_eq!(delivery, Delivery { sent: 1, failed: 1 });
        assert_eq!(notifier.stats(), (1, 1));
        assert_eq!(sink.received().len(), 2, "both targets were tried");
    }

    #[tokio::test]
    async fn a_hanging_target_is_cut_off_by_the_timeout() {
        let (sink, base) = Sink::start().await;
        let notifier = Notifier::with_timeout(
            vec![
                slack(&base, "hang"),
                webhook(&base, "hang"),
                slack(&base, "ok"),
            ],
            SHORT,
        );

        let started = Instant::now();
        let delivery = notifier
            .send(&Notice::new(Outcome::Started, "x", "dev"))
            .await;
        let elapsed = started.elapsed();

        assert_eq!(delivery, Delivery { sent: 1, failed: 2 });
        // Posted concurrently: two hanging targets cost one timeout, not two.
        assert!(
            elapsed < SHORT * 2 + Duration::from_millis(200),
            "{elapsed:?}"
        );
        assert_eq!(sink.received().len(), 3);
    }

    #[tokio::test]
    async fn failures_never_show_the_secret_part_of_the_url() {
        let (_sink, base) = Sink::start().await;
        let client = Client::builder().timeout(SHORT).build().unwrap();
        let body = json!({});
        // A port nothing listens on gives a connection error, which reqwest
        // would otherwise print with the full URL.
        let refused = Target::Slack(
            SecretUrl::new("http://127.0.0.1:1/services/T000/B000/XXXXSECRET").unwrap(),
        );
        for target in [slack(&base, "hang"), slack(&base, "fail"), refused] {
            let failure = super::post(&client, &target, &body, SHORT)
                .await
                .unwrap_err();
            let shown = format!("{failure} {failure:?}");
            assert!(!shown.contains("XXXXSECRET"), "{shown}");
            assert!(!shown.contains("T000"), "{shown}");
        }
        let refused = Target::Webhook(SecretUrl::new("http://127.0.0.1:1/XXXXSECRET").unwrap());
        let failure = super::post(&client, &refused, &body, SHORT)
            .await
            .unwrap_err();
        assert!(
            failure.to_string().contains("Connection refused"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn stats_accumulate_across_sends() {
        let (_sink, base) = Sink::start().await;
        let notifier = Notifier::new(vec![webhook(&base, "ok"), webhook(&base, "fail")]);
        let notice = Notice::new(Outcome::Succeeded, "x", "dev");

        notifier.send(&notice).await;
        notifier.clone().send(&notice).await;

        assert_eq!(notifier.stats(), (2, 2));
    }

    /// An SSM client for a port nothing listens on, trying once.
    fn unreachable_ssm() -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:1")
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }

    #[tokio::test]
    async fn targets_given_as_secrets_are_read_on_the_first_send() {
        let (sink, base) = Sink::start().await;
        let url = |route: &str| SecretSource::Value(format!("{base}/{route}/T000/XXXXSECRET"));
        let notifier = Notifier::from_secrets(
            vec![
                (TargetKind::Slack, url("ok")),
                (TargetKind::Webhook, url("ok")),
            ],
            unreachable_ssm(),
        );
        assert_eq!(notifier.configured(), 2);
        let delivery = notifier
            .send(&Notice::new(Outcome::Succeeded, "api", "dev"))
            .await;
        assert_eq!(delivery, Delivery { sent: 2, failed: 0 });
        let received = sink.received();
        // Each kind got its own payload shape.
        assert!(received
            .iter()
            .any(|(_, body)| body.get("attachments").is_some()));
        assert!(received
            .iter()
            .any(|(_, body)| body.get("outcome").is_some()));
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_fails_the_posts_and_is_read_again_next_time() {
        let notifier = Notifier::from_secrets(
            vec![(
                TargetKind::Slack,
                SecretSource::Parameter("/deployer/slack".into()),
            )],
            unreachable_ssm(),
        );
        let notice = Notice::new(Outcome::Failed, "api", "dev");
        assert_eq!(
            notifier.send(&notice).await,
            Delivery { sent: 0, failed: 1 }
        );
        // Not remembered as set up: the next send tries SSM again.
        assert_eq!(
            notifier.send(&notice).await,
            Delivery { sent: 0, failed: 1 }
        );
        assert_eq!(notifier.stats(), (0, 2));
        let error = notifier.prepare().await.unwrap_err().to_string();
        assert!(
            error.contains("reading SSM parameter /deployer/slack"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_disabled_notifier_sends_nothing() {
        let notifier = Notifier::disabled();
        let delivery = notifier
            .send(&Notice::new(Outcome::Failed, "x", "dev"))
            .await;
        assert_eq!(delivery, Delivery::default());
        assert_eq!(notifier.stats(), (0, 0));
        assert_eq!(Notifier::new(Vec::new()).configured(), 0);
    }
}
