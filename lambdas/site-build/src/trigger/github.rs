//! GitHub webhook deliveries on the Function URL.
//!
//! The order is the point: the signature is checked on the raw bytes before
//! anything else looks at them, so an unsigned or re-signed body is never
//! parsed, and its headers are never trusted.
//!
//! | Event | Becomes |
//! |-------|---------|
//! | `ping` | [`Command::Pong`] |
//! | `pull_request` opened, reopened, synchronize | build the head branch's preview at the head commit (and staging, when configured) |
//! | `pull_request` closed (merged or not) | remove the head branch's preview |
//! | `push` to `refs/heads/{production branch}` | build production at `after` |
//! | anything else | [`Command::Ignored`], with the reason |
//!
//! Pull requests from forks are ignored: building runs the branch's
//! `npm ci` and `npm run build` with this function's credentials, and a
//! fork's code is not ours to run.
//!
//! The caller hands over the body exactly as it arrived (a Function URL
//! sets `isBase64Encoded` for some bodies; decode that first, nothing else).

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    Branch, BuildRequest, Command, CommitSha, Environment, GitHubEvent, NameError, Origin,
    PullRequestAction, Repository,
};
use crate::signature::{SignatureError, WebhookSecret, SIGNATURE_HEADER};

/// The event name (`push`, `pull_request`, `ping`, ...).
pub const EVENT_HEADER: &str = "X-GitHub-Event";

/// A GUID per delivery; GitHub's "Redeliver" sends the same one again.
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";

const CONTENT_TYPE_HEADER: &str = "Content-Type";

/// The webhook's other content type sends `payload=<url-encoded JSON>`.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// GitHub's delivery ids are 36-character GUIDs; this leaves room and no more.
const MAX_DELIVERY_ID: usize = 128;

/// What this webhook acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubPolicy {
    /// A push here deploys production.
    pub production_branch: Branch,
    /// Whether a pull request also deploys its head branch to staging.
    pub staging_on_pull_request: bool,
    /// Repositories whose deliveries are acted on; empty means any.
    pub repositories: Vec<Repository>,
}

impl GitHubPolicy {
    fn allows(&self, repository: &Repository) -> bool {
        self.repositories.is_empty() || self.repositories.iter().any(|r| r.same_as(repository))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("the delivery has no {header} header")]
    MissingHeader { header: &'static str },
    #[error("the {header} header is not usable: {reason}")]
    InvalidHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("the {event} delivery has no readable payload: {reason}")]
    UnreadablePayload {
        event: &'static str,
        reason: &'static str,
    },
    #[error("the {event} payload is not what GitHub sends: {source}")]
    MalformedPayload {
        event: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {event} payload's {field} is invalid: {source}")]
    InvalidField {
        event: &'static str,
        field: &'static str,
        #[source]
        source: NameError,
    },
}

impl WebhookError {
    /// The HTTP status the Function URL answers with: 401 when the delivery
    /// cannot be shown to come from GitHub, 400 when it is signed but not
    /// something this function can read.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::Signature(_) => 401,
            WebhookError::MissingHeader { .. }
            | WebhookError::InvalidHeader { .. }
            | WebhookError::UnreadablePayload { .. }
            | WebhookError::MalformedPayload { .. }
            | WebhookError::InvalidField { .. } => 400,
        }
    }
}

/// Turns one delivery into what it asks for (two builds for a pull request
/// when staging follows pull requests, otherwise one command).
///
/// `headers` looks a header up by name, ignoring case (Function URLs deliver
/// names in lowercase).
pub fn parse_webhook(
    headers: &impl Fn(&str) -> Option<String>,
    raw_body: &[u8],
    secret: &WebhookSecret,
    policy: &GitHubPolicy,
) -> Result<Vec<Command>, WebhookError> {
    secret.verify(headers(SIGNATURE_HEADER).as_deref(), raw_body)?;

    let event = required_header(headers, EVENT_HEADER)?;
    let delivery_id = required_header(headers, DELIVERY_HEADER)?;
    if delivery_id.len() > MAX_DELIVERY_ID || delivery_id.chars().any(char::is_control) {
        return Err(WebhookError::InvalidHeader {
            header: DELIVERY_HEADER,
            reason: "longer than 128 characters or holds control characters",
        });
    }
    let form_encoded = headers(CONTENT_TYPE_HEADER).is_some_and(|content_type| {
        content_type
            .trim_start()
            .get(..FORM_CONTENT_TYPE.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(FORM_CONTENT_TYPE))
    });

    let delivery = DeliveryId {
        body_sha256: hex::encode(Sha256::digest(raw_body)),
        delivery_id,
    };
    let command = match event.as_str() {
        "ping" => Command::Pong,
        "pull_request" => {
            let payload = decode("pull_request", raw_body, form_encoded)?;
            return pull_request(payload, delivery, policy);
        }
        "push" => push(decode("push", raw_body, form_encoded)?, delivery, policy)?,
        other => Command::Ignored {
            reason: format!(
                "GitHub event {:?} does not trigger anything",
                other.chars().take(40).collect::<String>()
            ),
        },
    };
    Ok(vec![command])
}

/// What identifies one delivery: its header, and the digest of the signed
/// body it is deduplicated on.
struct DeliveryId {
    delivery_id: String,
    body_sha256: String,
}

fn required_header(
    headers: &impl Fn(&str) -> Option<String>,
    header: &'static str,
) -> Result<String, WebhookError> {
    headers(header)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or(WebhookError::MissingHeader { header })
}

fn decode<T: DeserializeOwned>(
    event: &'static str,
    raw_body: &[u8],
    form_encoded: bool,
) -> Result<T, WebhookError> {
    let json = if form_encoded {
        Cow::Owned(
            form_payload(raw_body).ok_or(WebhookError::UnreadablePayload {
                event,
                reason: "the form-encoded body has no payload field",
            })?,
        )
    } else {
        Cow::Borrowed(raw_body)
    };
    serde_json::from_slice(&json).map_err(|source| WebhookError::MalformedPayload { event, source })
}

/// The `payload` field of an `application/x-www-form-urlencoded` body.
fn form_payload(raw_body: &[u8]) -> Option<Vec<u8>> {
    let value = raw_body
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"payload="))?;
    // In a form body `+` is a space; `%2B` is a plus.
    let spaced: Vec<u8> = value
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Some(percent_encoding::percent_decode(&spaced).collect())
}

#[derive(Deserialize)]
struct RepositoryPayload {
    full_name: String,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    number: u64,
    pull_request: PullRequestPayload,
    repository: RepositoryPayload,
    sender: Option<Account>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    head: HeadPayload,
}

#[derive(Deserialize)]
struct HeadPayload {
    #[serde(rename = "ref")]
    branch: String,
    sha: String,
    /// `null` when the fork the pull request came from was deleted.
    repo: Option<RepositoryPayload>,
}

#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: RepositoryPayload,
    sender: Option<Account>,
}

fn repository(
    event: &'static str,
    payload: &RepositoryPayload,
) -> Result<Repository, WebhookError> {
    payload
        .full_name
        .parse()
        .map_err(|source| WebhookError::InvalidField {
            event,
            field: "repository.full_name",
            source,
        })
}

fn not_allowed(repository: &Repository) -> Command {
    Command::Ignored {
        reason: format!("repository {repository} is not one this webhook deploys"),
    }
}

fn triggered_by(sender: Option<Account>) -> String {
    sender.map_or_else(|| "GitHub".to_owned(), |account| account.login)
}

fn pull_request(
    payload: PullRequestEvent,
    delivery: DeliveryId,
    policy: &GitHubPolicy,
) -> Result<Vec<Command>, WebhookError> {
    const EVENT: &str = "pull_request";
    let repository = repository(EVENT, &payload.repository)?;
    if !policy.allows(&repository) {
        return Ok(vec![not_allowed(&repository)]);
    }
    let number = payload.number;
    let action = match payload.action.as_str() {
        "opened" => PullRequestAction::Opened,
        "reopened" => PullRequestAction::Reopened,
        "synchronize" => PullRequestAction::Synchronize,
        "closed" => PullRequestAction::Closed,
        other => {
            return Ok(vec![Command::Ignored {
                reason: format!(
                    "pull request #{number} was {:?}, which changes no preview",
                    other.chars().take(40).collect::<String>()
                ),
            }])
        }
    };
    let head = payload.pull_request.head;
    match &head.repo {
        Some(head_repository)
            if head_repository
                .full_name
                .eq_ignore_ascii_case(&payload.repository.full_name) => {}
        Some(fork) => {
            return Ok(vec![Command::Ignored {
                reason: format!(
                    "pull request #{number} comes from the fork {:?}; code from forks is not built",
                    fork.full_name.chars().take(200).collect::<String>()
                ),
            }])
        }
        None => {
            return Ok(vec![Command::Ignored {
                reason: format!(
                    "pull request #{number} comes from a repository that no longer exists"
                ),
            }])
        }
    }
    let branch: Branch = head
        .branch
        .parse()
        .map_err(|source| WebhookError::InvalidField {
            event: EVENT,
            field: "pull_request.head.ref",
            source,
        })?;
    let origin = Origin::GitHub {
        delivery_id: delivery.delivery_id,
        body_sha256: delivery.body_sha256,
        event: GitHubEvent::PullRequest { number, action },
    };
    if action == PullRequestAction::Closed {
        return Ok(vec![Command::RemovePreview {
            repository,
            branch,
            origin,
        }]);
    }
    let commit: CommitSha = head
        .sha
        .parse()
        .map_err(|source| WebhookError::InvalidField {
            event: EVENT,
            field: "pull_request.head.sha",
            source,
        })?;
    let triggered_by = triggered_by(payload.sender);
    let mut environments = vec![Environment::Preview];
    if policy.staging_on_pull_request {
        environments.push(Environment::Staging);
    }
    Ok(environments
        .into_iter()
        .map(|environment| {
            Command::Build(BuildRequest::new(
                repository.clone(),
                branch.clone(),
                Some(commit.clone()),
                environment,
                triggered_by.clone(),
                origin.clone(),
            ))
        })
        .collect())
}

fn push(
    payload: PushEvent,
    delivery: DeliveryId,
    policy: &GitHubPolicy,
) -> Result<Command, WebhookError> {
    const EVENT: &str = "push";
    let repository = repository(EVENT, &payload.repository)?;
    if !policy.allows(&repository) {
        return Ok(not_allowed(&repository));
    }
    let production_ref = policy.production_branch.git_ref();
    let shown_ref: String = payload.git_ref.chars().take(200).collect();
    if payload.git_ref != production_ref {
        return Ok(Command::Ignored {
            reason: format!(
                "a push to {shown_ref:?} deploys nothing; only {production_ref} deploys production"
            ),
        });
    }
    if payload.deleted {
        return Ok(Command::Ignored {
            reason: format!("{production_ref} was deleted; there is nothing to build"),
        });
    }
    let commit: CommitSha = payload
        .after
        .parse()
        .map_err(|source| WebhookError::InvalidField {
            event: EVENT,
            field: "after",
            source,
        })?;
    Ok(Command::Build(BuildRequest::new(
        repository,
        policy.production_branch.clone(),
        Some(commit),
        Environment::Production,
        triggered_by(payload.sender),
        Origin::GitHub {
            delivery_id: delivery.delivery_id,
            body_sha256: delivery.body_sha256,
            event: GitHubEvent::Push {
                git_ref: payload.git_ref,
            },
        },
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const PULL_REQUEST: &[u8] = include_bytes!("fixtures/github_pull_request_opened.json");
    const PUSH: &[u8] = include_bytes!("fixtures/github_push.json");
    const PING: &[u8] = include_bytes!("fixtures/github_ping.json");

    const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    const HEAD_SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    const MERGE_SHA: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";

    fn secret() -> WebhookSecret {
        WebhookSecret::new("a webhook secret of reasonable length").unwrap()
    }

    fn policy() -> GitHubPolicy {
        GitHubPolicy {
            production_branch: "main".parse().unwrap(),
            staging_on_pull_request: false,
            repositories: vec![],
        }
    }

    /// A delivery as a Function URL hands it over: lowercase header names.
    struct Delivery {
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    }

    impl Delivery {
        fn signed(event: &str, body: &[u8]) -> Self {
            let mut headers = BTreeMap::new();
            headers.insert("x-github-event".to_owned(), event.to_owned());
            headers.insert("x-github-delivery".to_owned(), DELIVERY.to_owned());
            headers.insert("content-type".to_owned(), "application/json".to_owned());
            headers.insert(
                "user-agent".to_owned(),
                "GitHub-Hookshot/8a1c2e4".to_owned(),
            );
            headers.insert("x-hub-signature-256".to_owned(), secret().sign(body));
            Self {
                headers,
                body: body.to_vec(),
            }
        }

        fn with_header(mut self, name: &str, value: &str) -> Self {
            self.headers
                .insert(name.to_ascii_lowercase(), value.to_owned());
            self
        }

        fn without_header(mut self, name: &str) -> Self {
            self.headers.remove(&name.to_ascii_lowercase());
            self
        }

        fn parse(&self, policy: &GitHubPolicy) -> Result<Vec<Command>, WebhookError> {
            let lookup = |name: &str| self.headers.get(&name.to_ascii_lowercase()).cloned();
            parse_webhook(&lookup, &self.body, &secret(), policy)
        }
    }

    fn edited(body: &[u8], from: &str, to: &str) -> Vec<u8> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.contains(from), "the fixture has no {from:?}");
        text.replacen(from, to, 1).into_bytes()
    }

    fn only_build(commands: Vec<Command>) -> BuildRequest {
        match <[Command; 1]>::try_from(commands) {
            Ok([Command::Build(request)]) => request,
            other => panic!("expected one build, got {other:?}"),
        }
    }

    fn only_ignored(commands: Vec<Command>) -> String {
        match <[Command; 1]>::try_from(commands) {
            Ok([Command::Ignored { reason }]) => reason,
            other => panic!("expected one ignored command, got {other:?}"),
        }
    }

    #[test]
    fn a_signature_over_reserialised_json_is_401_and_nothing_is_parsed() {
        let value: serde_json::Value = serde_json::from_slice(PUSH).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        let delivery = Delivery::signed("push", PUSH)
            .with_header("X-Hub-Signature-256", &secret().sign(&compact));
        let error = delivery.parse(&policy()).unwrap_err();
        assert!(
            matches!(error, WebhookError::Signature(SignatureError::Mismatch)),
            "{error:?}"
        );
        assert_eq!(error.status(), 401);

        // Nothing is parsed: garbage under a bad signature is a 401, not a 400,
        // and so is a delivery that lacks every other header.
        let garbage = Delivery::signed("push", b"{not json")
            .with_header("X-Hub-Signature-256", &secret().sign(b"{}"))
            .without_header("X-GitHub-Event")
            .without_header("X-GitHub-Delivery");
        assert_eq!(garbage.parse(&policy()).unwrap_err().status(), 401);
    }

    #[test]
    fn a_missing_signature_is_401() {
        let delivery = Delivery::signed("push", PUSH).without_header("X-Hub-Signature-256");
        let error = delivery.parse(&policy()).unwrap_err();
        assert!(matches!(
            error,
            WebhookError::Signature(SignatureError::Missing)
        ));
        assert_eq!(error.status(), 401);
    }

    #[test]
    fn a_signature_with_another_secret_is_401() {
        let other = WebhookSecret::new("someone else's secret").unwrap();
        let delivery =
            Delivery::signed("push", PUSH).with_header("X-Hub-Signature-256", &other.sign(PUSH));
        assert_eq!(delivery.parse(&policy()).unwrap_err().status(), 401);
    }

    #[test]
    fn a_signed_delivery_without_event_or_delivery_header_is_400() {
        for header in [EVENT_HEADER, DELIVERY_HEADER] {
            let error = Delivery::signed("push", PUSH)
                .without_header(header)
                .parse(&policy())
                .unwrap_err();
            assert!(
                matches!(error, WebhookError::MissingHeader { header: h } if h == header),
                "{error:?}"
            );
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn a_signed_body_that_is_not_the_events_json_is_400() {
        let error = Delivery::signed("push", b"{\"ref\": 7}")
            .parse(&policy())
            .unwrap_err();
        assert!(matches!(
            error,
            WebhookError::MalformedPayload { event: "push", .. }
        ));
        assert_eq!(error.status(), 400);

        let bad_sha = edited(PULL_REQUEST, HEAD_SHA, "6dcb09b");
        let error = Delivery::signed("pull_request", &bad_sha)
            .parse(&policy())
            .unwrap_err();
        assert!(matches!(
            error,
            WebhookError::InvalidField {
                field: "pull_request.head.sha",
                ..
            }
        ));
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn ping_is_answered_with_pong() {
        let commands = Delivery::signed("ping", PING).parse(&policy()).unwrap();
        assert_eq!(commands, vec![Command::Pong]);
    }

    #[test]
    fn an_opened_pull_request_builds_its_head_branch_preview_at_the_head_commit() {
        let request = only_build(
            Delivery::signed("pull_request", PULL_REQUEST)
                .parse(&policy())
                .unwrap(),
        );
        assert_eq!(request.repository().to_string(), "acme/site");
        assert_eq!(request.branch().as_str(), "feature/pricing");
        assert_eq!(request.commit().unwrap().as_str(), HEAD_SHA);
        assert_eq!(request.environment(), Environment::Preview);
        assert_eq!(request.triggered_by(), "ana");
        assert_eq!(
            request.origin(),
            &Origin::GitHub {
                delivery_id: DELIVERY.to_owned(),
                body_sha256: digest(PULL_REQUEST),
                event: GitHubEvent::PullRequest {
                    number: 42,
                    action: PullRequestAction::Opened
                },
            }
        );
        assert_eq!(
            request.target(),
            sitedao::PublishTarget::preview("feature/pricing")
        );
    }

    #[test]
    fn reopened_and_synchronize_build_the_preview_too() {
        for action in ["reopened", "synchronize"] {
            let body = edited(
                PULL_REQUEST,
                "\"action\": \"opened\"",
                &format!("\"action\": \"{action}\""),
            );
            let request = only_build(
                Delivery::signed("pull_request", &body)
                    .parse(&policy())
                    .unwrap(),
            );
            assert_eq!(request.environment(), Environment::Preview, "{action}");
        }
    }

    #[test]
    fn staging_follows_pull_requests_when_configured_and_each_build_has_its_own_key() {
        let policy = GitHubPolicy {
            staging_on_pull_request: true,
            ..policy()
        };
        let commands = Delivery::signed("pull_request", PULL_REQUEST)
            .parse(&policy)
            .unwrap();
        let environments: Vec<Environment> = commands
            .iter()
            .map(|command| match command {
                Command::Build(request) => request.environment(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(environments, [Environment::Preview, Environment::Staging]);
        assert_ne!(commands[0].dedupe_key(), commands[1].dedupe_key());
    }

    #[test]
    fn a_redelivery_yields_the_same_dedupe_keys() {
        let policy = GitHubPolicy {
            staging_on_pull_request: true,
            ..policy()
        };
        let keys = |delivery: &Delivery| -> Vec<_> {
            delivery
                .parse(&policy)
                .unwrap()
                .iter()
                .map(Command::dedupe_key)
                .collect()
        };
        let first = keys(&Delivery::signed("pull_request", PULL_REQUEST));
        let redelivered = keys(&Delivery::signed("pull_request", PULL_REQUEST));
        assert_eq!(first, redelivered);
        assert_eq!(
            first[0].as_ref().unwrap().as_str(),
            format!("github/{}/build-preview", digest(PULL_REQUEST))
        );
    }

    #[test]
    fn a_signed_body_replayed_under_a_new_delivery_id_is_the_same_request() {
        let keys = |delivery: &Delivery| -> Vec<_> {
            delivery
                .parse(&policy())
                .unwrap()
                .iter()
                .map(Command::dedupe_key)
                .collect()
        };
        let first = keys(&Delivery::signed("push", PUSH));
        let replayed = keys(
            &Delivery::signed("push", PUSH)
                .with_header("X-GitHub-Delivery", "9b1e0d32-cc79-11e3-8f0a-0a1b2c3d4e5f"),
        );
        assert_eq!(first, replayed);
        // Any other signed body is another request.
        let another = keys(&Delivery::signed(
            "push",
            &edited(PUSH, "\"before\": \"9a1f", "\"before\": \"8a1f"),
        ));
        assert_ne!(first, another);
    }

    fn digest(body: &[u8]) -> String {
        hex::encode(Sha256::digest(body))
    }

    #[test]
    fn a_closed_pull_request_removes_its_preview() {
        let body = edited(
            PULL_REQUEST,
            "\"action\": \"opened\"",
            "\"action\": \"closed\"",
        );
        let commands = Delivery::signed("pull_request", &body)
            .parse(&policy())
            .unwrap();
        assert_eq!(
            commands,
            vec![Command::RemovePreview {
                repository: "acme/site".parse().unwrap(),
                branch: "feature/pricing".parse().unwrap(),
                origin: Origin::GitHub {
                    delivery_id: DELIVERY.to_owned(),
                    body_sha256: digest(&body),
                    event: GitHubEvent::PullRequest {
                        number: 42,
                        action: PullRequestAction::Closed
                    },
                },
            }]
        );
        assert_eq!(
            commands[0].dedupe_key().unwrap().as_str(),
            format!("github/{}/remove-preview", digest(&body))
        );
    }

    #[test]
    fn other_pull_request_actions_are_ignored() {
        let body = edited(
            PULL_REQUEST,
            "\"action\": \"opened\"",
            "\"action\": \"labeled\"",
        );
        let reason = only_ignored(
            Delivery::signed("pull_request", &body)
                .parse(&policy())
                .unwrap(),
        );
        assert!(
            reason.contains("#42") && reason.contains("labeled"),
            "{reason}"
        );
    }

    #[test]
    fn a_pull_request_from_a_fork_is_not_built() {
        let body = edited(
            PULL_REQUEST,
            "\"full_name\": \"acme/site\"",
            "\"full_name\": \"mallory/site\"",
        );
        let reason = only_ignored(
            Delivery::signed("pull_request", &body)
                .parse(&policy())
                .unwrap(),
        );
        assert!(reason.contains("fork"), "{reason}");
    }

    #[test]
    fn a_push_to_the_production_branch_builds_production_without_approval() {
        let request = only_build(Delivery::signed("push", PUSH).parse(&policy()).unwrap());
        assert_eq!(request.environment(), Environment::Production);
        assert_eq!(request.branch().as_str(), "main");
        assert_eq!(request.commit().unwrap().as_str(), MERGE_SHA);
        assert!(!request.needs_approval(&policy().production_branch));
        assert_eq!(
            request.dedupe_key().unwrap().as_str(),
            format!("github/{}/build-production", digest(PUSH))
        );
    }

    #[test]
    fn a_pull_request_never_reaches_production_unapproved() {
        // Even a pull request whose head is the production branch builds a
        // preview, and no webhook path turns a pull request into production.
        let body = edited(
            PULL_REQUEST,
            "\"ref\": \"feature/pricing\"",
            "\"ref\": \"main\"",
        );
        let request = only_build(
            Delivery::signed("pull_request", &body)
                .parse(&policy())
                .unwrap(),
        );
        assert_eq!(request.environment(), Environment::Preview);
    }

    #[test]
    fn a_push_to_another_branch_is_ignored() {
        let body = edited(
            PUSH,
            "\"ref\": \"refs/heads/main\"",
            "\"ref\": \"refs/heads/feature/pricing\"",
        );
        let reason = only_ignored(Delivery::signed("push", &body).parse(&policy()).unwrap());
        assert!(reason.contains("refs/heads/feature/pricing"), "{reason}");
    }

    #[test]
    fn a_push_to_a_branch_named_like_production_elsewhere_is_ignored() {
        for git_ref in [
            "refs/tags/main",
            "refs/heads/main2",
            "refs/heads/release/main",
        ] {
            let body = edited(
                PUSH,
                "\"ref\": \"refs/heads/main\"",
                &format!("\"ref\": \"{git_ref}\""),
            );
            only_ignored(Delivery::signed("push", &body).parse(&policy()).unwrap());
        }
    }

    #[test]
    fn deleting_the_production_branch_builds_nothing() {
        let body = edited(PUSH, "\"deleted\": false", "\"deleted\": true");
        let body = edited(&body, MERGE_SHA, &"0".repeat(40));
        let reason = only_ignored(Delivery::signed("push", &body).parse(&policy()).unwrap());
        assert!(reason.contains("deleted"), "{reason}");
    }

    #[test]
    fn a_repository_outside_the_allowlist_is_ignored() {
        let policy = GitHubPolicy {
            repositories: vec!["acme/blog".parse().unwrap()],
            ..policy()
        };
        for (event, body) in [("push", PUSH), ("pull_request", PULL_REQUEST)] {
            let reason = only_ignored(Delivery::signed(event, body).parse(&policy).unwrap());
            assert!(reason.contains("acme/site"), "{reason}");
        }
        // The allowlist ignores case, as GitHub does.
        let listed = GitHubPolicy {
            repositories: vec!["ACME/Site".parse().unwrap()],
            ..policy
        };
        only_build(Delivery::signed("push", PUSH).parse(&listed).unwrap());
    }

    #[test]
    fn other_events_are_ignored_unparsed() {
        let reason = only_ignored(
            Delivery::signed("issues", b"not even json")
                .parse(&policy())
                .unwrap(),
        );
        assert!(reason.contains("issues"), "{reason}");
    }

    #[test]
    fn a_form_encoded_delivery_is_read_from_its_payload_field() {
        let encoded: String = percent_encoding::utf8_percent_encode(
            std::str::from_utf8(PUSH).unwrap(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let body = format!("payload={encoded}");
        let request = only_build(
            Delivery::signed("push", body.as_bytes())
                .with_header("Content-Type", "application/x-www-form-urlencoded")
                .parse(&policy())
                .unwrap(),
        );
        assert_eq!(request.commit().unwrap().as_str(), MERGE_SHA);

        let error = Delivery::signed("push", b"other=1")
            .with_header("Content-Type", "application/x-www-form-urlencoded")
            .parse(&policy())
            .unwrap_err();
        assert!(matches!(error, WebhookError::UnreadablePayload { .. }));
    }

    #[test]
    fn a_delivery_id_that_cannot_be_a_key_is_400() {
        let error = Delivery::signed("push", PUSH)
            .with_header("X-GitHub-Delivery", &"x".repeat(500))
            .parse(&policy())
            .unwrap_err();
        assert_eq!(error.status(), 400);
    }
}
