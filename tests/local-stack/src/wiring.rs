//! Reads the suite's wiring from `cloudformation.template`, so the local stack
//! delivers events with the settings the real stack uses.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context};
use serde_json::Value;

/// The template, with a resolver for the intrinsics the local stack needs.
pub struct Template {
    doc: Value,
    /// Logical id -> value of `Ref` (and `Fn::GetAtt` as `Id.Attr`).
    pub refs: HashMap<String, String>,
}

/// An IAM role as the template declares it, intrinsics resolved.
#[derive(Debug, Clone)]
pub struct IamRole {
    pub logical_id: String,
    pub name: String,
    pub trust_policy: Value,
    /// Inline policies: (name, document).
    pub policies: Vec<(String, Value)>,
    pub managed_policy_arns: Vec<String>,
}

/// Event source mapping settings (DynamoDB stream -> function).
#[derive(Debug, Clone)]
pub struct StreamMapping {
    pub batch_size: usize,
    pub maximum_retry_attempts: u32,
    pub bisect_on_error: bool,
    pub report_batch_item_failures: bool,
}

/// S3 notification to a function: the events and key filter.
#[derive(Debug, Clone)]
pub struct S3Notification {
    pub event: String,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl IamRole {
    /// The actions its inline policies allow (`Effect: Allow`, intrinsics
    /// already resolved), for doubles that check callers as moto's IAM
    /// does: by action, not resource.
    pub fn allowed_actions(&self) -> Vec<String> {
        let statements = self
            .policies
            .iter()
            .filter_map(|(_, document)| document.get("Statement"))
            .flat_map(|statement| match statement {
                Value::Array(list) => list.clone(),
                single => vec![single.clone()],
            });
        let mut actions = Vec::new();
        for statement in statements {
            if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            match statement.get("Action") {
                Some(Value::String(action)) => actions.push(action.clone()),
                Some(Value::Array(list)) => {
                    actions.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
        actions
    }
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut refs = HashMap::new();
        if let Some(params) = doc.get("Parameters").and_then(Value::as_object) {
            for (name, spec) in params {
                if let Some(default) = spec.get("Default") {
                    refs.insert(name.clone(), scalar(default));
                }
            }
        }
        Ok(Self { doc, refs })
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.refs.insert(name.to_owned(), value.into());
    }

    pub fn resource(&self, logical_id: &str) -> anyhow::Result<&Value> {
        self.doc
            .pointer(&format!("/Resources/{logical_id}/Properties"))
            .ok_or_else(|| anyhow!("cloudformation.template has no resource {logical_id}"))
    }

    pub fn stream_mapping(&self, logical_id: &str) -> anyhow::Result<StreamMapping> {
        let props = self.resource(logical_id)?;
        let number =
            |name: &str, default: u64| props.get(name).and_then(Value::as_u64).unwrap_or(default);
        Ok(StreamMapping {
            batch_size: number("BatchSize", 100) as usize,
            maximum_retry_attempts: number("MaximumRetryAttempts", 10_000) as u32,
            bisect_on_error: props
                .get("BisectBatchOnFunctionError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            report_batch_item_failures: props
                .get("FunctionResponseTypes")
                .and_then(Value::as_array)
                .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures")),
        })
    }

    pub fn s3_notifications(&self, bucket_id: &str) -> anyhow::Result<Vec<S3Notification>> {
        let props = self.resource(bucket_id)?;
        let configs = props
            .pointer("/NotificationConfiguration/LambdaConfigurations")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{bucket_id} has no LambdaConfigurations"))?;
        Ok(configs
            .iter()
            .map(|config| {
                let rule = |name: &str| {
                    config
                        .pointer("/Filter/S3Key/Rules")
                        .and_then(Value::as_array)
                        .and_then(|rules| {
                            rules
                                .iter()
                                .find(|r| r.get("Name").and_then(Value::as_str) == Some(name))
                        })
                        .and_then(|r| r.get("Value"))
                        .map(|v| self.resolve(v))
                };
                S3Notification {
                    event: config
                        .get("Event")
                        .map(|e| self.resolve(e))
                        .unwrap_or_default(),
                    prefix: rule("prefix"),
                    suffix: rule("suffix"),
                }
            })
            .collect())
    }

    /// A function's environment variables with intrinsics resolved.
    pub fn function_env(&self, function_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let props = self.resource(function_id)?;
        let vars = props
            .pointer("/Environment/Variables")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("{function_id} has no Environment.Variables"))?;
        Ok(vars
            .iter()
            .map(|(k, v)| (k.clone(), self.resolve(v)))
            .collect())
    }

    /// The function's timeout in seconds.
    pub fn function_timeout(&self, function_id: &str) -> u64 {
        self.resource(function_id)
            .ok()
            .and_then(|p| p.get("Timeout"))
            .and_then(Value::as_u64)
            .unwrap_or(3)
    }

    /// Logical ids of the resources of `resource_type`.
    fn resources_of(&self, resource_type: &str) -> Vec<String> {
        self.doc
            .get("Resources")
            .and_then(Value::as_object)
            .map(|resources| {
                resources
                    .iter()
                    .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(resource_type))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names every `AWS::IAM::Role` (its `RoleName`, else `{Environment}-deployer-{LogicalId}`)
    /// so `Ref` and `Fn::GetAtt Role.Arn` resolve. Call once `Environment` is set.
    pub fn name_roles(&mut self) {
        for id in self.resources_of("AWS::IAM::Role") {
            let name = self
                .resource(&id)
                .ok()
                .and_then(|props| props.get("RoleName"))
                .map(|v| self.resolve(v))
                .filter(|name| !name.is_empty() && !name.contains("<unresolved"))
                .unwrap_or_else(|| format!("{}-deployer-{id}", self.lookup("Environment")));
            let arn = format!("arn:aws:iam::{}:role/{name}", crate::account::ACCOUNT_ID);
            self.set(&format!("{id}.Arn"), arn);
            self.set(&id, name);
        }
    }

    /// Every `AWS::IAM::Role`, policies resolved (see [`Template::name_roles`]).
    pub fn iam_roles(&self) -> Vec<IamRole> {
        self.resources_of("AWS::IAM::Role")
            .into_iter()
            .filter_map(|id| {
                let props = self.resource(&id).ok()?;
                let policies = props
                    .get("Policies")
                    .and_then(|p| self.resolve_value(p))
                    .and_then(|p| p.as_array().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|policy| {
                        let name = policy.get("PolicyName")?.as_str()?.to_owned();
                        Some((name, policy.get("PolicyDocument")?.clone()))
                    })
                    .collect();
                let managed_policy_arns = props
                    .get("ManagedPolicyArns")
                    .and_then(|p| self.resolve_value(p))
                    .and_then(|p| p.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|arn| arn.as_str().map(str::to_owned))
                    .collect();
                Some(IamRole {
                    name: self.lookup(&id),
                    trust_policy: props
                        .get("AssumeRolePolicyDocument")
                        .and_then(|p| self.resolve_value(p))
                        .unwrap_or(Value::Null),
                    policies,
                    managed_policy_arns,
                    logical_id: id,
                })
            })
            .collect()
    }

    /// Every `AWS::Lambda::Function` with its function name (`FunctionName`,
    /// else the logical id) and the logical id of the role its `Role` names.
    pub fn function_roles(&self) -> Vec<(String, String, String)> {
        self.resources_of("AWS::Lambda::Function")
            .into_iter()
            .filter_map(|id| {
                let props = self.resource(&id).ok()?;
                let role = match props.get("Role")? {
                    Value::Object(map) => match map.get("Fn::GetAtt")? {
                        Value::Array(parts) => parts.first()?.as_str()?.to_owned(),
                        Value::String(path) => path.split('.').next()?.to_owned(),
                        _ => return None,
                    },
                    _ => return None,
                };
                let name = props
                    .get("FunctionName")
                    .map(|v| self.resolve(v))
                    .filter(|name| !name.is_empty() && !name.contains("<unresolved"))
                    .unwrap_or_else(|| id.clone());
                Some((id, name, role))
            })
            .collect()
    }

    /// Resolves intrinsics anywhere inside a JSON value, keeping structure:
    /// `Fn::If` picks a branch as it is, and `AWS::NoValue` removes the list
    /// item or property it stands for (`None` at the top).
    pub fn resolve_value(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (name, arg) = map.iter().next().expect("one entry");
                match name.as_str() {
                    "Ref" if arg == "AWS::NoValue" => None,
                    "Fn::If" => {
                        let items = arg.as_array()?;
                        let chosen =
                            if self.condition(&items.first().map(scalar).unwrap_or_default()) {
                                items.get(1)
                            } else {
                                items.get(2)
                            };
                        self.resolve_value(chosen?)
                    }
                    "Ref" | "Fn::GetAtt" | "Fn::Sub" | "Fn::Join" => {
                        Some(Value::String(self.resolve(value)))
                    }
                    _ => Some(Value::Object(
                        map.iter()
                            .filter_map(|(k, v)| Some((k.clone(), self.resolve_value(v)?)))
                            .collect(),
                    )),
                }
            }
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.resolve_value(v)?)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|v| self.resolve_value(v)).collect(),
            )),
            other => Some(other.clone()),
        }
    }

    /// Resolves `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join` and plain scalars.
    pub fn resolve(&self, value: &Value) -> String {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (name, arg) = map.iter().next().expect("one entry");
                match name.as_str() {
                    "Ref" => self.lookup(&scalar(arg)),
                    "Fn::GetAtt" => {
                        let parts: Vec<String> = match arg {
                            Value::Array(items) => items.iter().map(scalar).collect(),
                            other => scalar(other).split('.').map(str::to_owned).collect(),
                        };
                        self.lookup(&parts.join("."))
                    }
                    "Fn::Sub" => {
                        let (text, vars) = match arg {
                            Value::Array(items) => (
                                items.first().map(scalar).unwrap_or_default(),
                                items.get(1).and_then(Value::as_object).cloned(),
                            ),
                            other => (scalar(other), None),
                        };
                        let mut out = String::new();
                        let mut rest = text.as_str();
                        while let Some(start) = rest.find("${") {
                            out.push_str(&rest[..start]);
                            let after = &rest[start + 2..];
                            let end = after.find('}').unwrap_or(after.len());
                            let name = &after[..end];
                            let local = vars
                                .as_ref()
                                .and_then(|v| v.get(name))
                                .map(|v| self.resolve(v));
                            out.push_str(&local.unwrap_or_else(|| self.lookup(name)));
                            rest = after.get(end + 1..).unwrap_or("");
                        }
                        out.push_str(rest);
                        out
                    }
                    "Fn::If" => {
                        let items = arg.as_array().cloned().unwrap_or_default();
                        let chosen =
                            if self.condition(&items.first().map(scalar).unwrap_or_default()) {
                                items.get(1)
                            } else {
                                items.get(2)
                            };
                        chosen.map(|v| self.resolve(v)).unwrap_or_default()
                    }
                    "Fn::Join" => {
                        let items = arg.as_array().cloned().unwrap_or_default();
                        let sep = items.first().map(scalar).unwrap_or_default();
                        let parts: Vec<String> = items
                            .get(1)
                            .and_then(Value::as_array)
                            .map(|list| list.iter().map(|v| self.resolve(v)).collect())
                            .unwrap_or_default();
                        parts.join(&sep)
                    }
                    _ => value.to_string(),
                }
            }
            other => scalar(other),
        }
    }

    /// Evaluates a template condition (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`).
    pub fn condition(&self, name: &str) -> bool {
        let Some(expr) = self.doc.pointer(&format!("/Conditions/{name}")) else {
            return false;
        };
        self.truth(expr)
    }

    fn truth(&self, expr: &Value) -> bool {
        let Some((op, arg)) = expr.as_object().and_then(|m| m.iter().next()) else {
            return false;
        };
        let args = arg.as_array().cloned().unwrap_or_default();
        match op.as_str() {
            "Fn::Equals" => args.len() == 2 && self.resolve(&args[0]) == self.resolve(&args[1]),
            "Fn::Not" => !args.first().is_some_and(|a| self.truth(a)),
            "Fn::And" => args.iter().all(|a| self.truth(a)),
            "Fn::Or" => args.iter().any(|a| self.truth(a)),
            "Condition" => self.condition(&scalar(arg)),
            _ => false,
        }
    }

    /// Resolves intrinsics anywhere inside a JSON value (event patterns).
    pub fn resolve_deep(&self, value: &Value) -> Value {
        match value {
            Value::Object(map)
                if map.len() == 1 && map.keys().all(|k| k == "Ref" || k.starts_with("Fn::")) =>
            {
                Value::String(self.resolve(value))
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve_deep(v)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.resolve_deep(v)).collect())
            }
            other => other.clone(),
        }
    }

    /// EventBridge rules with a target on `function_id`: (rule name, pattern).
    pub fn rules_targeting(&self, function_id: &str) -> Vec<(String, Value)> {
        let Some(resources) = self.doc.get("Resources").and_then(Value::as_object) else {
            return Vec::new();
        };
        resources
            .values()
            .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::Events::Rule"))
            .filter_map(|r| r.get("Properties"))
            .filter(|props| {
                props
                    .get("Targets")
                    .and_then(Value::as_array)
                    .is_some_and(|targets| {
                        targets.iter().any(|t| {
                            t.pointer("/Arn/Fn::GetAtt/0").and_then(Value::as_str)
                                == Some(function_id)
                        })
                    })
            })
            .filter_map(|props| {
                let name = self.resolve(props.get("Name")?);
                let pattern = self.resolve_deep(props.get("EventPattern")?);
                Some((name, pattern))
            })
            .collect()
    }

    fn lookup(&self, name: &str) -> String {
        match name {
            "AWS::Region" => crate::account::REGION.to_owned(),
            "AWS::AccountId" => crate::account::ACCOUNT_ID.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => self
                .refs
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("<unresolved {name}>")),
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
