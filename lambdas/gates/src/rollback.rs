//! Rollbacks: a new build that redeploys the last good build of a stack,
//! through the same state machine as every other build.
//!
//! The automatic one is asked for by the state machine when a bake fails;
//! `deployer rollback` asks for one by hand. Both go through
//! [`builddao::BuildStore::create_rollback`], so a rollback is a build
//! record like any other.

use builddao::{BuildKey, Rollback};
use serde::{Deserialize, Serialize};

use crate::{GateError, Gates};

#[derive(Debug, Deserialize)]
pub struct RollbackRequest {
    pub build: KeyInput,
    pub repo: String,
    pub env: String,
    pub stack_name: String,
    /// Why the bake failed, e.g. `alarm dev-shop-Errors in ALARM`.
    pub reason: String,
    /// When the state machine asked (`$$.State.EnteredTime`): the same
    /// request retried gives the same rollback build.
    pub at: String,
}

#[derive(Debug, Deserialize)]
pub struct KeyInput {
    pub sk: String,
}

/// What the state machine records (`$.rolled_back`): the build's error.
#[derive(Debug, Serialize, PartialEq)]
pub struct RollbackAnswer {
    pub failure: String,
    /// The rollback build's key, empty when none was started.
    pub rollback_build: String,
}

pub async fn automatic(
    gates: &Gates,
    request: &RollbackRequest,
) -> Result<RollbackAnswer, GateError> {
    let bake_failed = |tail: String| RollbackAnswer {
        failure: format!("bake failed: {}; {tail}", request.reason),
        rollback_build: String::new(),
    };
    let key = BuildKey {
        repo: request.repo.clone(),
        env: request.env.clone(),
        sk: request.build.sk.clone(),
    };
    let failing = gates
        .builds
        .get(&key)
        .await
        .map_err(GateError::store)?
        .ok_or_else(|| {
            GateError::Invalid(format!(
                "build {}/{}/{} does not exist",
                key.repo, key.env, key.sk
            ))
        })?;
    if let Some(earlier) = &failing.rollback {
        return Ok(bake_failed(format!(
            "not rolled back again: this build is itself a rollback of build {}",
            earlier.of
        )));
    }
    let Some(good_sk) = builddao::deployed_sk(
        &gates.dynamodb,
        &gates.config.stacks_table,
        &request.stack_name,
    )
    .await
    .map_err(GateError::store)?
    else {
        return Ok(bake_failed(format!(
            "no earlier successful build of stack {} to roll back to",
            request.stack_name
        )));
    };
    let good_key = BuildKey {
        sk: good_sk.clone(),
        ..key.clone()
    };
    let Some(good) = gates
        .builds
        .get(&good_key)
        .await
        .map_err(GateError::store)?
    else {
        return Ok(bake_failed(format!(
            "the last successful build {good_sk} of stack {} is no longer recorded",
            request.stack_name
        )));
    };
    let at_unix_ms =
        time::OffsetDateTime::parse(&request.at, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|err| {
                GateError::Invalid(format!("at {:?} is not RFC 3339: {err}", request.at))
            })?;
    let rollback = Rollback {
        of: failing.sk.clone(),
        to: good.sk.clone(),
        automatic: true,
        reason: request.reason.clone(),
    };
    let started = gates
        .builds
        .create_rollback(&good, rollback, "deployer (automatic rollback)", at_unix_ms)
        .await
        .map_err(GateError::store)?;
    Ok(RollbackAnswer {
        failure: format!(
            "rolled back: {}; redeploying version {} (build {}) as build {}",
            request.reason, good.version, good.sk, started.sk
        ),
        rollback_build: started.sk,
    })
}
