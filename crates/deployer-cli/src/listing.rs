//! `deployer status` and `deployer history`: the ledger as tables (aligned
//! on a terminal and in a pipe) or as JSON.

use std::io::IsTerminal;

use anyhow::Context;
use ledger::{Deployment, State, TargetRef};
use serde::Serialize;
use time::OffsetDateTime;

use crate::outcome::Outcome;
use crate::records::{EnvStatus, Install, TargetStatus};
use crate::table::{duration, when, Table};

/// Whether a person reads stdout (relative times are added for them).
pub fn for_a_person() -> bool {
    std::io::stdout().is_terminal()
}

/// `status --json`.
#[derive(Serialize)]
struct StatusView<'a> {
    environments: &'a [EnvStatus],
}

/// `deployer status`: one table, every environment.
pub async fn status(installs: &[Install], json: bool) -> anyhow::Result<Outcome> {
    let mut statuses = Vec::new();
    for install in installs {
        statuses.push(
            install
                .status()
                .await
                .with_context(|| format!("reading the ledger of {}", install.env))?,
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&StatusView {
                environments: &statuses
            })?
        );
        return Ok(Outcome::Success);
    }
    print!(
        "{}",
        status_table(&statuses, OffsetDateTime::now_utc(), for_a_person())
    );
    for status in &statuses {
        if !status.installed {
            eprintln!(
                "{}: not installed (no {}-deployer-builds table)",
                status.env, status.env
            );
        } else if status.targets.is_empty() {
            eprintln!("{}: nothing deployed yet", status.env);
        }
        if status.truncated {
            eprintln!("{}", truncated_note(&status.env));
        }
        for t in &status.targets {
            for open in t.open.iter().filter(|d| d.state.awaits_a_person()) {
                if open.kind == ledger::Kind::Stack && open.state == State::AwaitingWindow {
                    eprintln!(
                        "held by a freeze window: deployer approve {} {} --env {} lets it through",
                        open.target, open.id, open.env
                    );
                } else if open.kind == ledger::Kind::Stack {
                    eprintln!(
                        "waiting for approval: deployer approve {} {} --env {}",
                        open.target, open.id, open.env
                    );
                } else {
                    eprintln!(
                        "waiting for approval: {} in {} (the approval link was sent; or deployer site approve)",
                        open.name(),
                        open.env
                    );
                }
            }
        }
    }
    Ok(Outcome::Success)
}

/// What `status` and the dashboard say when the cap on the records read
/// cut older ones off.
pub fn truncated_note(env: &str) -> String {
    format!(
        "{env}: truncated: only the newest {} records of each kind were read; a target deployed only before them is not shown (DEPLOYER_RECENT_PER_KIND raises the cap)",
        crate::records::recent_per_kind()
    )
}

pub fn status_table(statuses: &[EnvStatus], now: OffsetDateTime, person: bool) -> String {
    let mut table = Table::new(&["ENV", "KIND", "TARGET", "LIVE", "SINCE", "BY", "NOW"]);
    for status in statuses {
        for t in &status.targets {
            let (live, since, by) = match &t.live {
                Some(live) => (
                    live.version.clone(),
                    when(live.finished_at.unwrap_or(live.started_at), now, person),
                    live.by.clone().unwrap_or_else(|| "-".into()),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            table.row(vec![
                status.env.clone(),
                t.kind.to_string(),
                t.target.clone(),
                live,
                since,
                by,
                now_cell(t),
            ]);
        }
    }
    table.render()
}

/// What is happening to a target besides what is live: its open
/// deployments, else its newest one if that one failed.
fn now_cell(t: &TargetStatus) -> String {
    if !t.open.is_empty() {
        return t
            .open
            .iter()
            .map(|d| format!("{} {}", d.state, d.version))
            .collect::<Vec<_>>()
            .join(", ");
    }
    let latest = &t.latest;
    let is_live = t.live.as_ref().is_some_and(|l| l.id == latest.id);
    match latest.state {
        State::Failed if !is_live => format!(
            "FAILED {}: {}",
            latest.version,
            latest.reason.as_deref().unwrap_or("no reason recorded")
        ),
        State::Removed => "REMOVED".into(),
        _ => "-".into(),
    }
}

#[derive(Serialize)]
struct HistoryView<'a> {
    env: &'a str,
    target: String,
    deployments: &'a [Deployment],
    /// Pass as --after for the next (older) page.
    next: Option<String>,
}

/// `deployer history TARGET`.
pub async fn history(
    install: &Install,
    target: &str,
    limit: usize,
    after: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let target: TargetRef = target.parse().map_err(anyhow::Error::msg)?;
    let kind = install.resolve(&target).await?;
    let (deployments, next) = install.history(kind, &target.name, limit, after).await?;
    let name = format!("{kind}:{}", target.name);
    if json {
        let view = HistoryView {
            env: &install.env,
            target: name,
            deployments: &deployments,
            next,
        };
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(Outcome::Success);
    }
    if deployments.is_empty() {
        eprintln!("no deployments of {name} in {}", install.env);
        return Ok(Outcome::Success);
    }
    print!(
        "{}",
        history_table(&deployments, OffsetDateTime::now_utc(), for_a_person())
    );
    if let Some(next) = next {
        eprintln!(
            "more: deployer history {name} --env {} --after {next}",
            install.env
        );
    }
    Ok(Outcome::Success)
}

pub fn history_table(deployments: &[Deployment], now: OffsetDateTime, person: bool) -> String {
    let mut table = Table::new(&[
        "DEPLOYMENT",
        "STATE",
        "VERSION",
        "BRANCH",
        "STARTED",
        "TOOK",
        "BY",
        "WHY",
    ]);
    for d in deployments {
        let why = d
            .reason
            .clone()
            .or_else(|| d.transitions.last().map(|c| c.reason.clone()))
            .unwrap_or_default();
        table.row(vec![
            d.id.clone(),
            d.state.to_string(),
            d.version.clone(),
            d.branch.clone().unwrap_or_else(|| "-".into()),
            when(d.started_at, now, person),
            d.duration_seconds.map_or("-".into(), duration),
            d.by.clone().unwrap_or_else(|| "-".into()),
            why,
        ]);
    }
    table.render()
}
