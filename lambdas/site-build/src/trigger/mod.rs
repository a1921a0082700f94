//! What asked for a build, turned into one [`Command`].
//!
//! Three doors lead in, each parsed here without any I/O:
//! - [`github`]: a webhook delivery on the Function URL, signature first;
//! - [`email`]: an SES inbound record and the message's plain-text body;
//! - [`direct`]: a direct invocation's JSON.
//!
//! A [`BuildRequest`] remembers its [`Origin`], and the production gate is
//! decided from that origin ([`BuildRequest::needs_approval`]), never from a
//! flag a caller can set. Only the parsers in this module create build
//! requests, so an origin cannot be claimed without going through the door
//! that proves it (a push origin exists only behind a valid signature).

pub mod direct;
pub mod email;
pub mod github;
mod names;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sitedao::{DedupeKey, PublishTarget};

pub use names::{Branch, CommitSha, NameError, Repository};

/// Where a site is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Staging,
    /// One per branch.
    Preview,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Staging => "staging",
            Environment::Preview => "preview",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment {found:?} is not one of \"production\", \"staging\", \"preview\"")]
pub struct UnknownEnvironment {
    pub found: String,
}

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    fn from_str(name: &str) -> Result<Self, UnknownEnvironment> {
        match name {
            "production" => Ok(Environment::Production),
            "staging" => Ok(Environment::Staging),
            "preview" => Ok(Environment::Preview),
            other => Err(UnknownEnvironment {
                found: other.chars().take(40).collect(),
            }),
        }
    }
}

/// The GitHub event behind a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GitHubEvent {
    /// `git_ref` as the push named it: `refs/heads/main`.
    Push { git_ref: String },
    PullRequest {
        number: u64,
        action: PullRequestAction,
    },
}

/// The pull request actions that do something; GitHub has many more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestAction {
    Opened,
    Reopened,
    Synchronize,
    Closed,
}

/// Which door a command came through, with the id that door gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A signed webhook delivery. A redelivery keeps its `delivery_id`,
    /// but that header is outside the signature; `body_sha256` (hex) is
    /// the digest of the signed raw body, which nobody can re-send under
    /// another identity.
    #[serde(rename = "github")]
    GitHub {
        delivery_id: String,
        body_sha256: String,
        event: GitHubEvent,
    },
    /// An SES inbound message; `sender` is its From address, in lowercase.
    Email { message_id: String, sender: String },
    /// A direct invocation, on behalf of an editing session if one is named.
    Direct { session_id: Option<String> },
}

impl Origin {
    /// The id this origin's door gives one request, namespaced by door:
    /// `github/{body sha256}`, `ses/{message id}`, `direct/{session id}`.
    /// A direct invocation without a session has none.
    ///
    /// A webhook is known by the digest of its signed body, not by its
    /// `X-GitHub-Delivery` header: a redelivery carries the same body (and
    /// id), and a captured delivery replayed under a new id carries the same
    /// body too, so both are the same request. Two real events never share
    /// a body (a push names `pushed_at`, a pull request `updated_at`).
    fn id(&self) -> Option<String> {
        match self {
            Origin::GitHub { body_sha256, .. } => Some(format!("github/{body_sha256}")),
            Origin::Email { message_id, .. } => Some(format!("ses/{message_id}")),
            Origin::Direct { session_id } => session_id.as_ref().map(|id| format!("direct/{id}")),
        }
    }
}

/// The [`DedupeKey`] of `action` asked for through `origin`: the origin's
/// id plus what was asked (`…/build-staging`); `None` when the origin has
/// no id.
fn dedupe_key(origin: &Origin, action: &str) -> Option<DedupeKey> {
    origin.id().map(|id| DedupeKey::new(&id, action))
}

/// A build of one branch of one repository into one environment.
///
/// Made only by this module's parsers; read through the accessors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildRequest {
    repository: Repository,
    branch: Branch,
    commit: Option<CommitSha>,
    environment: Environment,
    triggered_by: String,
    origin: Origin,
}

impl BuildRequest {
    fn new(
        repository: Repository,
        branch: Branch,
        commit: Option<CommitSha>,
        environment: Environment,
        triggered_by: String,
        origin: Origin,
    ) -> Self {
        Self {
            repository,
            branch,
            commit,
            environment,
            triggered_by,
            origin,
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    pub fn branch(&self) -> &Branch {
        &self.branch
    }

    /// The exact commit to build, when the trigger named one (webhooks do);
    /// otherwise the branch's head at fetch time.
    pub fn commit(&self) -> Option<&CommitSha> {
        self.commit.as_ref()
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Who asked: a GitHub login, an email address, or what a direct caller
    /// said. For records and notifications, never for decisions.
    pub fn triggered_by(&self) -> &str {
        &self.triggered_by
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Where the build is published; a preview is named by its branch's slug.
    pub fn target(&self) -> PublishTarget {
        match self.environment {
            Environment::Production => PublishTarget::Production,
            Environment::Staging => PublishTarget::Staging,
            Environment::Preview => PublishTarget::Preview {
                slug: self.branch.preview_slug(),
            },
        }
    }

    /// Whether production waits for an approval before this build deploys.
    ///
    /// The one trigger that deploys production on its own is a (signed)
    /// push to the production branch: merging there is the approval. Any
    /// other way into production (email, direct invocation, a pull request)
    /// needs one. Staging and previews never do.
    pub fn needs_approval(&self, production_branch: &Branch) -> bool {
        if self.environment != Environment::Production {
            return false;
        }
        let pushed_to_production = matches!(
            &self.origin,
            Origin::GitHub { event: GitHubEvent::Push { git_ref }, .. }
                if *git_ref == production_branch.git_ref()
        );
        !(pushed_to_production && self.branch == *production_branch)
    }

    /// See [`DedupeKey`]; `None` for a direct invocation without a session.
    pub fn dedupe_key(&self) -> Option<DedupeKey> {
        dedupe_key(&self.origin, &format!("build-{}", self.environment))
    }
}

/// What a trigger asks the site-build handler to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Build(BuildRequest),
    /// The branch is gone from review (its pull request closed): take its
    /// preview down.
    RemovePreview {
        repository: Repository,
        branch: Branch,
        origin: Origin,
    },
    /// Tell the sender where a preview is. Without a branch: every preview
    /// of the repository.
    ShowPreview {
        repository: Repository,
        branch: Option<Branch>,
        origin: Origin,
    },
    /// GitHub's `ping` when a webhook is created: answer 200, do nothing.
    Pong,
    /// A valid trigger that asks for nothing (another branch, another
    /// event, a sentence that is not a command); `reason` says which.
    Ignored {
        reason: String,
    },
}

impl Command {
    /// See [`DedupeKey`]. `Pong` and `Ignored` change nothing and have none.
    pub fn dedupe_key(&self) -> Option<DedupeKey> {
        match self {
            Command::Build(request) => request.dedupe_key(),
            Command::RemovePreview { origin, .. } => dedupe_key(origin, "remove-preview"),
            Command::ShowPreview { origin, .. } => dedupe_key(origin, "show-preview"),
            Command::Pong | Command::Ignored { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main() -> Branch {
        "main".parse().unwrap()
    }

    fn request(environment: Environment, branch: &str, origin: Origin) -> BuildRequest {
        BuildRequest::new(
            "acme/site".parse().unwrap(),
            branch.parse().unwrap(),
            None,
            environment,
            "ana".to_owned(),
            origin,
        )
    }

    fn push(git_ref: &str) -> Origin {
        Origin::GitHub {
            delivery_id: "d-1".to_owned(),
            body_sha256: "b-1".to_owned(),
            event: GitHubEvent::Push {
                git_ref: git_ref.to_owned(),
            },
        }
    }

    #[test]
    fn environments_read_and_print_in_lowercase() {
        for environment in [
            Environment::Production,
            Environment::Staging,
            Environment::Preview,
        ] {
            assert_eq!(environment.as_str().parse(), Ok(environment));
        }
        assert_eq!(
            "Production".parse::<Environment>(),
            Err(UnknownEnvironment {
                found: "Production".to_owned()
            })
        );
    }

    #[test]
    fn only_a_push_to_the_production_branch_deploys_production_unapproved() {
        let pushed = request(Environment::Production, "main", push("refs/heads/main"));
        assert!(!pushed.needs_approval(&main()));
        // The same push, judged against another production branch.
        assert!(pushed.needs_approval(&"release".parse().unwrap()));
        // A push origin whose branch is not the one pushed.
        let mismatched = request(Environment::Production, "other", push("refs/heads/main"));
        assert!(mismatched.needs_approval(&main()));
    }

    #[test]
    fn production_from_any_other_origin_needs_approval() {
        let origins = [
            Origin::GitHub {
                delivery_id: "d-2".to_owned(),
                body_sha256: "b-2".to_owned(),
                event: GitHubEvent::PullRequest {
                    number: 7,
                    action: PullRequestAction::Opened,
                },
            },
            Origin::Email {
                message_id: "m-1".to_owned(),
                sender: "ana@example.com".to_owned(),
            },
            Origin::Direct {
                session_id: Some("s-1".to_owned()),
            },
            Origin::Direct { session_id: None },
        ];
        for origin in origins {
            let production = request(Environment::Production, "main", origin.clone());
            assert!(production.needs_approval(&main()), "{origin:?}");
            let staging = request(Environment::Staging, "main", origin);
            assert!(!staging.needs_approval(&main()));
        }
    }

    #[test]
    fn a_preview_is_published_under_its_branch_slug() {
        let preview = request(Environment::Preview, "feature/Login", push("x"));
        assert_eq!(preview.target(), PublishTarget::preview("feature/Login"));
        let staging = request(Environment::Staging, "feature/Login", push("x"));
        assert_eq!(staging.target(), PublishTarget::Staging);
    }

    #[test]
    fn dedupe_keys_name_the_origin_and_the_action() {
        let preview = request(Environment::Preview, "f", push("refs/heads/f"));
        let staging = request(Environment::Staging, "f", push("refs/heads/f"));
        assert_eq!(
            preview.dedupe_key().unwrap().as_str(),
            "github/b-1/build-preview"
        );
        assert_ne!(preview.dedupe_key(), staging.dedupe_key());

        let email = Origin::Email {
            message_id: "m-9".to_owned(),
            sender: "ana@example.com".to_owned(),
        };
        let show = Command::ShowPreview {
            repository: "acme/site".parse().unwrap(),
            branch: None,
            origin: email,
        };
        assert_eq!(show.dedupe_key().unwrap().as_str(), "ses/m-9/show-preview");

        let sessionless = request(
            Environment::Staging,
            "f",
            Origin::Direct { session_id: None },
        );
        assert_eq!(sessionless.dedupe_key(), None);
        assert_eq!(Command::Pong.dedupe_key(), None);
    }

    #[test]
    fn a_command_serialises_for_logs_and_records() {
        let build = Command::Build(request(
            Environment::Production,
            "main",
            push("refs/heads/main"),
        ));
        let json = serde_json::to_value(&build).unwrap();
        assert_eq!(json["command"], "build");
        assert_eq!(json["repository"], "acme/site");
        assert_eq!(json["environment"], "production");
        assert_eq!(json["origin"]["kind"], "github");
        assert_eq!(json["origin"]["event"]["git_ref"], "refs/heads/main");
    }
}
