//! Which build a deployment execution belongs to, when all an execution
//! status event says for sure is the execution's name and ARN.
//!
//! EventBridge leaves the input out of "Step Functions Execution Status
//! Change" when it is too large, and an execution started by hand may have
//! any input. The build is found, in this order, from the input's
//! `build.pk`/`build.sk`, from the execution's name (the orchestrator names
//! executions `{repo}-{env}-{sk}`), and from the execution ARN the
//! orchestrator stores on the build when it starts it.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use builddao::{BuildKey, BuildStore};
use serde_json::Value;

use crate::events::ExecutionEnded;
use crate::DispatchError;

/// The build an execution deploys, and the stack whose lock it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionBuild {
    pub key: BuildKey,
    pub stack_name: Option<String>,
    /// How it was found: "input", "name" or "execution ARN".
    pub found_by: &'static str,
}

/// The build key in an orchestrator execution name `{repo}-{env}-{sk}`.
/// The repo part may have been cut to fit Step Functions' 80 characters;
/// then the key names no build and the execution ARN finds it instead.
pub fn key_from_execution_name(name: &str) -> Option<BuildKey> {
    let mut parts = name.rsplitn(3, '-');
    let (sk, env, repo) = (parts.next()?, parts.next()?, parts.next()?);
    let env_ok = !env.is_empty() && env.chars().all(|c| c.is_ascii_alphanumeric());
    (builddao::is_build_sk(sk) && env_ok && !repo.is_empty()).then(|| BuildKey {
        repo: repo.to_owned(),
        env: env.to_owned(),
        sk: sk.to_owned(),
    })
}

/// The build named by the execution input's `build.pk`/`build.sk`.
pub fn key_from_input(input: &Value) -> Option<BuildKey> {
    let build = input.get("build")?;
    let (repo, env) = build.get("pk")?.as_str()?.rsplit_once('/')?;
    let sk = build.get("sk")?.as_str()?;
    (!repo.is_empty() && !env.is_empty() && !sk.is_empty()).then(|| BuildKey {
        repo: repo.to_owned(),
        env: env.to_owned(),
        sk: sk.to_owned(),
    })
}

/// Finds the build of `ended` in the builds table `table`.
pub async fn find_build(
    builds: &BuildStore,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    ended: &ExecutionEnded,
) -> Result<Option<ExecutionBuild>, DispatchError> {
    if let Some(key) = ended.input.as_ref().and_then(key_from_input) {
        let stack_name = match ended.input.as_ref().and_then(|i| i["stack_name"].as_str()) {
            Some(name) => Some(name.to_owned()),
            None => builds.get(&key).await?.map(|b| b.stack_name),
        };
        return Ok(Some(ExecutionBuild {
            key,
            stack_name,
            found_by: "input",
        }));
    }
    let named = key_from_execution_name(&ended.name);
    if let Some(key) = &named {
        if let Some(build) = builds.get(key).await? {
            // The name is the orchestrator's only if the build ran no other
            // execution (a hand-started one may reuse the form).
            if build
                .execution_arn
                .as_deref()
                .is_none_or(|arn| arn == ended.execution_arn)
            {
                return Ok(Some(ExecutionBuild {
                    key: key.clone(),
                    stack_name: Some(build.stack_name),
                    found_by: "name",
                }));
            }
        }
    }
    scan_for_execution(dynamodb, table, &ended.execution_arn, named.as_ref()).await
}

/// Scans the builds table for the build whose `execution_arn` is `arn` (or,
/// when the name held a build key, a not-yet-started build with its sk).
/// There is no index on the ARN: this runs only for executions whose input
/// and name both failed to name a build, which is rare.
async fn scan_for_execution(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    arn: &str,
    named: Option<&BuildKey>,
) -> Result<Option<ExecutionBuild>, DispatchError> {
    let mut filter = "execution_arn = :arn".to_owned();
    let mut scan = dynamodb
        .scan()
        .table_name(table)
        .projection_expression("#repo, #env, sk, stack_name")
        .expression_attribute_names("#repo", "repo")
        .expression_attribute_names("#env", "env")
        .expression_attribute_values(":arn", AttributeValue::S(arn.to_owned()));
    if let Some(named) = named {
        filter.push_str(" OR (sk = :sk AND attribute_not_exists(execution_arn))");
        scan = scan.expression_attribute_values(":sk", AttributeValue::S(named.sk.clone()));
    }
    let mut pages = scan.filter_expression(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            DispatchError::Aws(format!(
                "scanning {table} for execution {arn}: {}",
                DisplayErrorContext(&err)
            ))
        })?;
        if let Some(found) = page.items().iter().find_map(build_of_item) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn build_of_item(item: &HashMap<String, AttributeValue>) -> Option<ExecutionBuild> {
    let field = |name: &str| item.get(name)?.as_s().ok().cloned();
    Some(ExecutionBuild {
        key: BuildKey {
            repo: field("repo")?,
            env: field("env")?,
            sk: field("sk")?,
        },
        stack_name: field("stack_name"),
        found_by: "execution ARN",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(repo: &str) -> builddao::Build {
        build_with_sk(repo, "2KqFQ6jRk1aaaaaaaaaaaaaaaaa")
    }

    fn build_with_sk(repo: &str, sk: &str) -> builddao::Build {
        // From the stored form, so fields added with defaults need no edit here.
        serde_json::from_value(json!({
            "pk": format!("{repo}/dev"), "sk": sk,
            "repo": repo, "env": "dev", "branch": "main", "version": "3.abcd",
            "build_number": 3, "commit_hash": "abcd", "status": "IN_PROGRESS",
            "stack_name": format!("dev-{repo}"), "artifact_bucket": "artifacts",
            "artifact_prefix": format!("{repo}/main/3.abcd/"),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .expect("a stored build")
    }

    #[test]
    fn the_orchestrators_execution_name_reads_back_as_the_build_key() {
        for repo in ["shop", "my-shop-2", "a"] {
            let build = build(repo);
            let name = orchestrator::execution_name(&build);
            assert_eq!(key_from_execution_name(&name), Some(build.key()), "{name}");
        }
    }

    #[test]
    fn upload_time_keys_read_back_from_the_execution_name_too() {
        let sk = builddao::build_sk(1_795_000_000_123, 42, b"shop/main/42.abcd/");
        let build = build_with_sk("shop", &sk);
        let name = orchestrator::execution_name(&build);
        assert_eq!(key_from_execution_name(&name), Some(build.key()), "{name}");
    }

    #[test]
    fn a_repo_cut_to_fit_names_another_key_and_hand_made_names_name_none() {
        let long = "r".repeat(70);
        let build = build(&long);
        let key = key_from_execution_name(&orchestrator::execution_name(&build)).unwrap();
        assert_eq!(key.sk, build.sk);
        assert_ne!(key.repo, build.repo, "cut: the ARN finds this one");
        for name in [
            "retry-by-hand",
            "shop-dev-short",
            "manual",
            "-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(key_from_execution_name(name), None, "{name}");
        }
    }

    #[test]
    fn the_input_names_the_build_by_pk_and_sk() {
        let input =
            json!({"build": {"pk": "my-shop/dev", "sk": "2Kq"}, "stack_name": "dev-my-shop"});
        assert_eq!(
            key_from_input(&input),
            Some(BuildKey {
                repo: "my-shop".into(),
                env: "dev".into(),
                sk: "2Kq".into()
            })
        );
        assert_eq!(key_from_input(&json!({"anything": 1})), None);
        assert_eq!(
            key_from_input(&json!({"build": {"pk": "nosep", "sk": "x"}})),
            None
        );
    }
}
