//! The functions' identities on the emulator: each function runs with a
//! session of its own template role, as Lambda runs it (docs/local-stack.md,
//! "IAM enforcement").
//!
//! [`FunctionRoles::install`] creates every `AWS::IAM::Role` of the template
//! in the emulator's IAM, with its policies resolved, and assumes each
//! function's role for it: the session is named after the function, which is
//! how the fault engine still tells callers apart. A function added to the
//! template gets its role's credentials with no code here.

use std::collections::HashMap;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::account::RoleCredentials;
use crate::emulator::Emulator;
use crate::wiring::Template;

/// The credentials each template function runs with, by logical id.
#[derive(Debug, Clone, Default)]
pub struct FunctionRoles {
    by_function: HashMap<String, FunctionRole>,
}

#[derive(Debug, Clone)]
struct FunctionRole {
    credentials: RoleCredentials,
    /// What its role's policies allow (see [`crate::wiring::IamRole::allowed_actions`]).
    actions: Vec<String>,
}

impl FunctionRoles {
    /// Creates the template's roles on the emulator (or replaces their
    /// policies) and a session of each function's role. One request.
    /// Call once every resource the policies name is provisioned and
    /// [`Template::name_roles`] has run.
    pub async fn install(emulator: &Emulator, template: &Template) -> anyhow::Result<Self> {
        let iam_roles = template.iam_roles();
        let roles: Vec<Value> = iam_roles
            .iter()
            .cloned()
            .map(|role| {
                let policies: serde_json::Map<String, Value> = role
                    .policies
                    .into_iter()
                    .map(|(name, document)| (name, placeholder_resources(document)))
                    .collect();
                json!({
                    "name": role.name,
                    "trust": role.trust_policy,
                    "policies": policies,
                    "managed": role.managed_policy_arns,
                })
            })
            .collect();
        let functions = template.function_roles();
        let sessions: Vec<Value> = functions
            .iter()
            .map(|(_, function_name, role_id)| {
                json!({"role": template.resolve(&json!({"Ref": role_id})), "session": function_name})
            })
            .collect();
        let answer = emulator
            .install_roles(json!({"roles": roles, "sessions": sessions}))
            .await?;
        let mut credentials: HashMap<String, RoleCredentials> =
            serde_json::from_value(answer["credentials"].clone())
                .context("the emulator's role credentials")?;
        let mut by_function = HashMap::new();
        for (function_id, function_name, role_id) in functions {
            let session = credentials
                .remove(&function_name)
                .with_context(|| format!("no session for {function_id} ({function_name})"))?;
            let actions = iam_roles
                .iter()
                .find(|role| role.logical_id == role_id)
                .map(|role| role.allowed_actions())
                .unwrap_or_default();
            by_function.insert(
                function_id,
                FunctionRole {
                    credentials: session,
                    actions,
                },
            );
        }
        Ok(Self { by_function })
    }

    /// The credentials `function_id` (a logical id) runs with.
    pub fn credentials(&self, function_id: &str) -> anyhow::Result<&RoleCredentials> {
        match self.by_function.get(function_id) {
            Some(role) => Ok(&role.credentials),
            None => bail!("{function_id} has no Role in cloudformation.template"),
        }
    }

    /// Every function's access key id with the actions its role allows.
    pub fn allowed_actions(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.by_function.values().map(|role| {
            (
                role.credentials.access_key_id.as_str(),
                role.actions.as_slice(),
            )
        })
    }

    /// Environment for `function_id`'s process: the emulator's endpoint and
    /// its role session's credentials.
    pub fn client_env(
        &self,
        emulator: &Emulator,
        function_id: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(emulator.client_env_with(self.credentials(function_id)?))
    }
}

/// Resources the local stack never creates (log groups, dead-letter queues,
/// the KeyValueStore) resolve to `<unresolved …>`; IAM wants an ARN, so they
/// become ARNs no request names.
fn placeholder_resources(document: Value) -> Value {
    match document {
        Value::String(text) if text.contains("<unresolved") => Value::String(format!(
            "arn:aws:local:::not-provisioned/{}",
            text.replace(['<', '>', ' '], "")
        )),
        Value::Array(items) => Value::Array(items.into_iter().map(placeholder_resources).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, placeholder_resources(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether an IAM action pattern (`service:Action`, `service:*`, `*`,
/// case-insensitive) covers `action`.
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}
