//! `deployer site`: the static site's deployments, approvals and rollbacks.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;
use sitedao::{Deployment, DeploymentStore, DeploymentSummary, PublishTarget};

use crate::invoke::invoke;
use crate::outcome::Outcome;
use crate::table::{when, Table};

#[derive(Subcommand, Clone)]
pub enum SiteCommand {
    /// Deployments of one target, newest first, with the deploy each one
    /// made and whether rollback can reach it (ROLLBACK: `live`, `previous`
    /// for a plain rollback, `kept` for `rollback --to`, `pruned`).
    List {
        /// production, staging or preview.
        #[arg(default_value = "production")]
        environment: String,
        /// The branch, for a preview.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i32,
        #[arg(long)]
        json: bool,
    },
    /// Approve a production deploy: with the link sent to the approvers
    /// (the same as opening it and pressing the button; the token works
    /// once), or by deployment id with AWS credentials that may write the
    /// deployments table and invoke the function (when the link is lost).
    Approve {
        /// The approval link, or a production deployment id.
        link_or_id: String,
        /// Who approves (recorded on the deployment; by-id approvals only).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Put the previous deploy of a target back live, or with --to any
    /// deploy it keeps (see `site list`). Nothing is rebuilt or uploaded;
    /// running it again without --to undoes it.
    Rollback {
        /// production, staging or preview.
        #[arg(default_value = "production")]
        environment: String,
        /// The branch, for a preview.
        #[arg(long)]
        branch: Option<String>,
        /// The deploy to put live (a DEPLOY id from `site list`) instead of
        /// the previous one.
        #[arg(long)]
        to: Option<String>,
        /// Who rolls back (recorded and announced).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

pub struct SiteContext {
    pub env: String,
    pub table: Option<String>,
    pub function: Option<String>,
}

pub async fn run(
    aws: &aws_config::SdkConfig,
    context: SiteContext,
    command: SiteCommand,
) -> anyhow::Result<Outcome> {
    match command {
        SiteCommand::List {
            environment,
            branch,
            limit,
            json,
        } => {
            let target = target(&environment, branch.as_deref())?;
            let table = context
                .table
                .unwrap_or_else(|| format!("{}-deployer-site-deployments", context.env));
            let function = context
                .function
                .unwrap_or_else(|| format!("{}-deployer-site-build", context.env));
            let store = DeploymentStore::new(aws_sdk_dynamodb::Client::new(aws), table);
            let deployments = store.list(&target.name(), limit).await?;
            let payload = serde_json::json!({"deploys": {
                "environment": environment, "branch": branch,
            }});
            let reach = match invoke(aws, &function, &payload).await {
                Ok(Ok(answer)) => Some(Reach::from_answer(&answer)),
                Ok(Err(message)) => {
                    eprintln!("cannot tell which deploys rollback reaches (ROLLBACK shows ?): {function} answered: {message}");
                    None
                }
                Err(e) => {
                    eprintln!(
                        "cannot tell which deploys rollback reaches (ROLLBACK shows ?): {e:#}"
                    );
                    None
                }
            };
            let rollback_of = |d: &Deployment| -> &'static str {
                match (&reach, &d.deploy_id) {
                    (_, None) => "-",
                    (None, Some(_)) => "?",
                    (Some(reach), Some(id)) => reach.of(id),
                }
            };
            if json {
                let view = ListView {
                    deployments: deployments
                        .iter()
                        .map(|d| ListedDeployment {
                            summary: d.summary(),
                            created_at: display_time(&d.created_at),
                            rollback: d.deploy_id.is_some().then(|| rollback_of(d)),
                        })
                        .collect(),
                    reach: reach.as_ref().map(|reach| ReachView {
                        live: reach.live.as_deref(),
                        previous: reach.previous.as_deref(),
                        reachable: &reach.kept,
                    }),
                };
                println!("{}", serde_json::to_string(&view)?);
                return Ok(Outcome::Success);
            }
            print!(
                "{}",
                list_table(
                    &deployments,
                    rollback_of,
                    time::OffsetDateTime::now_utc(),
                    crate::listing::for_a_person(),
                )
            );
            if let Some(reach) = &reach {
                eprintln!(
                    "rollback: `deployer site rollback {environment}` puts {} back; `--to DEPLOY` reaches {}",
                    reach.previous.as_deref().unwrap_or("nothing (no previous deploy)"),
                    if reach.kept.is_empty() {
                        "no other deploy".to_owned()
                    } else {
                        reach.kept.join(", ")
                    }
                );
            }
            Ok(Outcome::Success)
        }
        SiteCommand::Approve { link_or_id, .. } if link_or_id.contains("://") => {
            approve(&link_or_id).await
        }
        SiteCommand::Approve { link_or_id, by } => {
            let table = context
                .table
                .unwrap_or_else(|| format!("{}-deployer-site-deployments", context.env));
            let function = context
                .function
                .unwrap_or_else(|| format!("{}-deployer-site-build", context.env));
            approve_by_id(aws, &table, &function, &link_or_id, &by).await
        }
        SiteCommand::Rollback {
            environment,
            branch,
            to,
            by,
        } => {
            target(&environment, branch.as_deref())?;
            if let Some(to) = &to {
                if !sitedao::is_deploy_id(to) {
                    bail!("--to {to:?} is not a deploy id: give one of the DEPLOY ids `deployer site list` shows");
                }
            }
            let function = context
                .function
                .unwrap_or_else(|| format!("{}-deployer-site-build", context.env));
            let payload = serde_json::json!({"rollback": {
                "environment": environment, "branch": branch, "to": to, "triggered_by": by,
            }});
            let result = match invoke(aws, &function, &payload).await? {
                Ok(result) => result,
                Err(message) => {
                    eprintln!("rollback failed: {message}");
                    return Ok(Outcome::Failure);
                }
            };
            println!(
                "{} rolled back from {} to {} ({})",
                result["target"].as_str().unwrap_or("?"),
                result["rolled_back_from"].as_str().unwrap_or("?"),
                result["deploy_id"].as_str().unwrap_or("?"),
                result["url"].as_str().unwrap_or("?"),
            );
            Ok(Outcome::Success)
        }
    }
}

/// `site list` as a table (the CLI's shared one, so a long branch or URL
/// moves the columns after it, never out of line), then a line per
/// deployment's error or successor.
fn list_table(
    deployments: &[Deployment],
    rollback_of: impl Fn(&Deployment) -> &'static str,
    now: time::OffsetDateTime,
    person: bool,
) -> String {
    let mut rows = Table::new(&[
        "DEPLOYMENT",
        "STATUS",
        "BRANCH",
        "COMMIT",
        "DEPLOY",
        "ROLLBACK",
        "CREATED",
        "URL",
    ]);
    let mut notes = Vec::new();
    for d in deployments {
        let commit = d.commit.as_deref().unwrap_or("-");
        let created = ledger::parse_time(&d.created_at)
            .map_or_else(|| d.created_at.clone(), |at| when(at, now, person));
        rows.row(vec![
            d.id.clone(),
            d.status.as_str().to_owned(),
            d.branch.clone(),
            commit.chars().take(12).collect(),
            d.deploy_id.clone().unwrap_or_else(|| "-".into()),
            rollback_of(d).to_owned(),
            created,
            d.url.clone(),
        ]);
        if let Some(error) = &d.error {
            notes.push(format!("{}: error: {error}", d.id));
        }
        if let Some(newer) = &d.superseded_by {
            notes.push(format!("{}: superseded by {newer}", d.id));
        }
    }
    let mut out = rows.render();
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    out
}

/// `site list --json`: the deployments, and (when site-build could be
/// asked) which deploys rollback reaches.
#[derive(Serialize)]
struct ListView<'a> {
    deployments: Vec<ListedDeployment<'a>>,
    #[serde(flatten)]
    reach: Option<ReachView<'a>>,
}

#[derive(Serialize)]
struct ReachView<'a> {
    live: Option<&'a str>,
    previous: Option<&'a str>,
    reachable: &'a [String],
}

/// An RFC 3339 time as UTC, as written if it does not parse.
fn display_time(at: &str) -> String {
    ledger::parse_time(at).map_or_else(|| at.to_owned(), ledger::rfc3339)
}

/// A deployment as `site list --json` prints it: its summary, when it was
/// created, and for one that made a deploy whether rollback reaches it.
#[derive(Serialize)]
struct ListedDeployment<'a> {
    #[serde(flatten)]
    summary: DeploymentSummary<'a>,
    created_at: String,
    /// `live`, `previous`, `kept`, `pruned`, or `?` when site-build could
    /// not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<&'static str>,
}

/// What rollback reaches in one target, as site-build answered.
struct Reach {
    live: Option<String>,
    previous: Option<String>,
    kept: Vec<String>,
}

impl Reach {
    fn from_answer(answer: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Self {
            live: text(&answer["live"]),
            previous: text(&answer["previous"]),
            kept: answer["reachable"]
                .as_array()
                .map(|ids| ids.iter().filter_map(text).collect())
                .unwrap_or_default(),
        }
    }

    fn of(&self, deploy_id: &str) -> &'static str {
        if self.live.as_deref() == Some(deploy_id) {
            "live"
        } else if self.previous.as_deref() == Some(deploy_id) {
            "previous"
        } else if self.kept.iter().any(|k| k == deploy_id) {
            "kept"
        } else {
            "pruned"
        }
    }
}

fn target(environment: &str, branch: Option<&str>) -> anyhow::Result<PublishTarget> {
    Ok(match (environment, branch) {
        ("production", None) => PublishTarget::Production,
        ("staging", None) => PublishTarget::Staging,
        ("preview", Some(branch)) => PublishTarget::preview(branch),
        ("preview", None) => bail!("a preview is named by its branch: add --branch"),
        ("production" | "staging", Some(_)) => {
            bail!("--branch is only for previews; {environment} has one deploy at a time")
        }
        (other, _) => bail!("{other:?} is not production, staging or preview"),
    })
}

/// Approves a waiting production deployment by id: the same conditional
/// write the link makes (it removes the token, so the link stops working),
/// then the asynchronous invocation that runs it.
async fn approve_by_id(
    aws: &aws_config::SdkConfig,
    table: &str,
    function: &str,
    id: &str,
    by: &str,
) -> anyhow::Result<Outcome> {
    use sitedao::{Changes, DeploymentKey, DeploymentStatus, Transition};
    let store = DeploymentStore::new(aws_sdk_dynamodb::Client::new(aws), table);
    let key = DeploymentKey {
        target: PublishTarget::Production.name(),
        id: id.to_owned(),
    };
    let approved = store
        .transition(
            &key,
            DeploymentStatus::AwaitingApproval,
            DeploymentStatus::Queued,
            Changes::default()
                .set("approved_by", by)
                .set("approved_at", ledger::now_rfc3339())
                .remove("approval_token_hash")
                .remove("approval_expires_at"),
            None,
        )
        .await?;
    if approved == Transition::Refused {
        let status = store
            .get(&key)
            .await?
            .map(|d| d.status.to_string())
            .unwrap_or_else(|| "not found".into());
        eprintln!("not approved: production deployment {id} is {status}, not AWAITING_APPROVAL");
        return Ok(Outcome::Failure);
    }
    let payload = serde_json::json!({"run": &key});
    aws_sdk_lambda::Client::new(aws)
        .invoke()
        .function_name(function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .with_context(|| {
            format!("approved, but invoking {function} failed; the deployment is QUEUED: invoke it with {payload}")
        })?;
    println!("approved {id}: the production build has started");
    Ok(Outcome::Success)
}

/// Posts the approval form the link's page would post.
async fn approve(link: &str) -> anyhow::Result<Outcome> {
    let url = reqwest::Url::parse(link).context("the approval link is not a URL")?;
    if !url.path().ends_with("/approve") {
        bail!("{link} is not an approval link (it has no /approve path)");
    }
    let fields: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| matches!(k.as_ref(), "target" | "id" | "token"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if fields.len() != 3 {
        bail!("the approval link must carry target, id and token");
    }
    let mut post_url = url.clone();
    post_url.set_query(None);
    let response = reqwest::Client::new()
        .post(post_url)
        .form(&fields)
        .send()
        .await
        .context("posting the approval")?;
    let status = response.status();
    if status.is_success() {
        println!("approved: the production build has started");
        Ok(Outcome::Success)
    } else if status.as_u16() == 410 {
        eprintln!("not approved: the link was used already, expired, or the deployment was decided otherwise");
        Ok(Outcome::Failure)
    } else {
        bail!("the approval endpoint answered {status}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sitedao::{DeploymentAction, DeploymentKey, NewDeployment};

    use super::*;

    #[test]
    fn the_list_lines_up_whatever_the_branch_and_prints_rfc3339_times() {
        let deployment = |id: &str, branch: &str, at: &str| {
            let mut d = Deployment::queued(NewDeployment {
                key: DeploymentKey {
                    target: "preview".into(),
                    id: id.into(),
                },
                site: "acme/site".into(),
                environment: "preview".into(),
                action: DeploymentAction::Build,
                branch: branch.into(),
                url: "https://example.com/".into(),
                triggered_by: "ana".into(),
                origin: "github:push".into(),
                created_at: at.into(),
                expires_at: None,
            });
            d.error = Some("boom".into());
            d
        };
        let list = [
            deployment(
                "2qA",
                "feature/a-branch-well-over-twenty-characters",
                "2026-12-01T09:15:03.5+01:00",
            ),
            deployment("2qB", "main", "2026-12-01T08:00:00Z"),
        ];
        let now = time::macros::datetime!(2026-12-01 08:20:03 UTC);
        let table = list_table(&list, |_| "-", now, false);
        let lines: Vec<&str> = table.lines().collect();
        let column = |line: &str, name: &str| line.find(name);
        let url = column(lines[0], "URL").unwrap();
        let created = column(lines[0], "CREATED").unwrap();
        for line in &lines[1..3] {
            assert_eq!(column(line, "https://"), Some(url), "{table}");
        }
        assert_eq!(&lines[1][created..created + 20], "2026-12-01T08:15:03Z");
        assert_eq!(&lines[2][created..created + 20], "2026-12-01T08:00:00Z");
        assert_eq!(lines[3], "2qA: error: boom");
    }

    #[test]
    fn a_listed_deployment_is_its_summary_and_where_rollback_reaches() {
        let mut d = Deployment::queued(NewDeployment {
            key: DeploymentKey {
                target: "production".into(),
                id: "2qAbcdefghijklmnopqrstuvwxy".into(),
            },
            site: "acme/site".into(),
            environment: "production".into(),
            action: DeploymentAction::Build,
            branch: "main".into(),
            url: "https://example.com/".into(),
            triggered_by: "ana".into(),
            origin: "github:push".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
        });
        let listed = |d: &Deployment| {
            serde_json::to_value(ListedDeployment {
                summary: d.summary(),
                created_at: display_time(&d.created_at),
                rollback: d.deploy_id.is_some().then_some("kept"),
            })
            .unwrap()
        };
        let mut expected = json!({
            "deployment_id": "2qAbcdefghijklmnopqrstuvwxy",
            "target": "production",
            "environment": "production",
            "branch": "main",
            "status": "QUEUED",
            "url": "https://example.com/",
            "created_at": "2026-01-01T00:00:00Z",
        });
        assert_eq!(listed(&d), expected);
        d.deploy_id = Some("2qDeployDeployDeployDeployD".into());
        expected["deploy_id"] = json!("2qDeployDeployDeployDeployD");
        expected["rollback"] = json!("kept");
        assert_eq!(listed(&d), expected);
    }
}
