//! `deployer rollback`: a new build of an earlier good build of a stack,
//! stored like any other build so it goes through the same state machine
//! (policy, approval, freeze windows, bake) as the build it replaces.

use anyhow::Context;

use crate::outcome::refused;
use builddao::{Build, BuildStatus, BuildStore, Rollback};

/// How far back `rollback` looks for the build to go back to.
const SEARCH_LIMIT: usize = 500;

pub struct Request<'a> {
    pub repo: &'a str,
    pub env: &'a str,
    /// The build to go back to; default: the newest successful build of
    /// another version before the one deployed.
    pub to: Option<&'a str>,
    pub reason: &'a str,
    pub by: &'a str,
}

/// Stores the rollback build and returns it with the build it goes back to.
pub async fn request(
    store: &BuildStore,
    dynamodb: &aws_sdk_dynamodb::Client,
    stacks_table: &str,
    request: Request<'_>,
) -> anyhow::Result<(Build, Build)> {
    let Request {
        repo,
        env,
        to,
        reason,
        by,
    } = request;
    let newest = store
        .latest(repo, env)
        .await?
        .with_context(|| format!("no builds of {repo} in {env} (table {})", store.table()))?;
    let stack = newest.stack_name.clone();
    let deployed_sk = builddao::deployed_sk(dynamodb, stacks_table, &stack)
        .await?
        .ok_or_else(|| {
            refused(format!("stack {stack} has no successful deployment recorded in {stacks_table}: nothing to roll back"))
        })?;
    let deployed = crate::find(store, repo, env, Some(&deployed_sk))
        .await
        .with_context(|| format!("the build {deployed_sk} deployed on stack {stack}"))?;
    let target = match to {
        Some(sk) => {
            let target = crate::find(store, repo, env, Some(sk)).await?;
            if target.status != BuildStatus::Success {
                return Err(refused(format!(
                    "build {} is {}: only a build that deployed successfully can be rolled back to",
                    target.id(),
                    target.status
                )));
            }
            if target.sk == deployed.sk {
                return Err(refused(format!(
                    "build {} (version {}) is what stack {stack} runs now",
                    target.id(),
                    target.version
                )));
            }
            target
        }
        None => previous_good(store, &deployed).await?.ok_or_else(|| {
            refused(format!(
                "no successful build of {repo} in {env} before {} (version {}) with another version",
                deployed.sk, deployed.version
            ))
        })?,
    };
    let rollback = Rollback {
        of: deployed.sk.clone(),
        to: target.sk.clone(),
        automatic: false,
        reason: reason.to_owned(),
    };
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let build = store
        .create_rollback(&target, rollback, by, now_ms)
        .await
        .context("storing the rollback build")?;
    Ok((build, target))
}

/// The newest successful build older than `deployed` with another version.
async fn previous_good(store: &BuildStore, deployed: &Build) -> anyhow::Result<Option<Build>> {
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = store
            .list(&deployed.repo, &deployed.env, 100, after.as_deref())
            .await?;
        seen += page.builds.len();
        if let Some(found) = page.builds.into_iter().find(|b| {
            b.sk < deployed.sk && b.status == BuildStatus::Success && b.version != deployed.version
        }) {
            return Ok(Some(found));
        }
        match page.next {
            Some(next) if seen < SEARCH_LIMIT => after = Some(next),
            _ => return Ok(None),
        }
    }
}
