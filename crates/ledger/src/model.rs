use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time_format::{serde_rfc3339, Timestamp};

/// What a deployment deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A CloudFormation stack built from an upload.
    Stack,
    /// An ECS service redeployed by ci-dispatch.
    Service,
    /// A static-site target (production, staging, a preview).
    Site,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Stack, Kind::Service, Kind::Site];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stack => "stack",
            Kind::Service => "service",
            Kind::Site => "site",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind {s:?} (stack, service or site)"))
    }
}

/// A target as people name it: `stack:shop`, `service:app_service_web_prd`,
/// `site:production`, or the bare name when only one kind has it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TargetRef {
    pub kind: Option<Kind>,
    pub name: String,
}

impl FromStr for TargetRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a target is KIND:NAME or NAME".into());
        }
        match s.split_once(':') {
            Some((kind, name)) if Kind::from_str(kind).is_ok() && !name.is_empty() => {
                Ok(TargetRef {
                    kind: Some(kind.parse()?),
                    name: name.to_owned(),
                })
            }
            _ => Ok(TargetRef {
                kind: None,
                name: s.to_owned(),
            }),
        }
    }
}

/// Where a deployment is in its life, the same for every kind (each
/// record keeps its own status word beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Asked for, not started.
    Queued,
    /// Running.
    InFlight,
    /// Waiting for a person.
    AwaitingApproval,
    /// Held by a freeze window until it ends or a person approves.
    AwaitingWindow,
    /// Live: what it deployed is what runs.
    Succeeded,
    Failed,
    /// A newer deployment of the target went first; this one never deployed.
    Superseded,
    /// Ran and changed nothing (the site matched what was live).
    Unchanged,
    /// Took the target down (a preview removed).
    Removed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "QUEUED",
            State::InFlight => "IN_FLIGHT",
            State::AwaitingApproval => "AWAITING_APPROVAL",
            State::AwaitingWindow => "AWAITING_WINDOW",
            State::Succeeded => "SUCCEEDED",
            State::Failed => "FAILED",
            State::Superseded => "SUPERSEDED",
            State::Unchanged => "UNCHANGED",
            State::Removed => "REMOVED",
        }
    }

    /// Still to end.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            State::Queued | State::InFlight | State::AwaitingApproval | State::AwaitingWindow
        )
    }

    /// Waiting for `deployer approve` (an approval, or a freeze override).
    pub fn awaits_a_person(self) -> bool {
        matches!(self, State::AwaitingApproval | State::AwaitingWindow)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One transition of a deployment: its record's status word, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub status: String,
    #[serde(with = "serde_rfc3339")]
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// `console`, `execution`, `logs`, `preview`, `url`.
    pub label: String,
    pub url: String,
}

impl Link {
    /// `logs`: the CloudWatch Logs console page of `log_group` (the
    /// console's own encoding: `/` as `$252F`).
    pub fn logs(region: &str, log_group: &str) -> Self {
        Self {
            label: "logs".into(),
            url: format!(
                "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}",
                log_group.replace('/', "$252F")
            ),
        }
    }
}

/// One deployment of one target, whatever its kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub kind: Kind,
    /// The target's name within its kind: the repo of a stack, the ECS
    /// service, the site target.
    pub target: String,
    /// The install's environment (a site deployment also names its site
    /// environment in `target`).
    pub env: String,
    /// The record's own id within its target (a build's sk, a site
    /// deployment's id, a redeploy's sk): `{kind}:{target}#{id}` names it.
    pub id: String,
    /// Build version; task definition (and image digest); commit.
    pub version: String,
    /// The record's own status word (`SUCCESS`, `PUBLISHED`, ...).
    pub status: String,
    pub state: State,
    /// What set it off: an upload, an image push, a webhook, a command.
    pub trigger: String,
    /// Who: the uploader, approver, pusher or sender, when known.
    pub by: Option<String>,
    pub branch: Option<String>,
    #[serde(with = "serde_rfc3339")]
    pub started_at: Timestamp,
    #[serde(with = "serde_rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    pub duration_seconds: Option<i64>,
    /// Why it failed (or was refused), when it did.
    pub reason: Option<String>,
    /// Oldest first.
    pub transitions: Vec<Change>,
    pub links: Vec<Link>,
    /// A stack build's parameters (what a diff between versions compares).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// The change set's summary, for a stack build that showed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_summary: Option<String>,
}

impl Deployment {
    /// `stack:shop#u2026…`: the deployment as a CLI or page names it.
    pub fn name(&self) -> String {
        format!("{}:{}#{}", self.kind, self.target, self.id)
    }

    /// `stack:shop`.
    pub fn target_name(&self) -> String {
        format!("{}:{}", self.kind, self.target)
    }

    /// Seconds from `started_at` to `finished_at`.
    pub fn duration_of(started: Timestamp, finished: Option<Timestamp>) -> Option<i64> {
        finished.map(|f| (f - started).whole_seconds().max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_with_or_without_their_kind() {
        let named: TargetRef = "service:app_service_web_prd".parse().unwrap();
        assert_eq!(named.kind, Some(Kind::Service));
        assert_eq!(named.name, "app_service_web_prd");
        let bare: TargetRef = "preview/feature-x".parse().unwrap();
        assert_eq!(bare.kind, None);
        assert_eq!(bare.name, "preview/feature-x");
        let not_a_kind: TargetRef = "team:shop".parse().unwrap();
        assert_eq!(
            (not_a_kind.kind, not_a_kind.name.as_str()),
            (None, "team:shop")
        );
        assert!("".parse::<TargetRef>().is_err());
    }

    #[test]
    fn state_columns_honour_width() {
        assert_eq!(format!("[{:<10}]", State::Failed), "[FAILED    ]");
    }
}
