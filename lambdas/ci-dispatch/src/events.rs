//! EventBridge events, parsed at the edge into what they mean.

use serde_json::Value;

/// The EventBridge envelope fields every route needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub source: String,
    pub detail_type: String,
    pub resources: Vec<String>,
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    ImagePushed {
        repository: String,
        digest: String,
        tag: Option<String>,
    },
    ParameterChanged {
        name: String,
        operation: String,
    },
    EnvFileChanged {
        bucket: String,
        key: String,
        operation: String,
    },
    Manual {
        /// The environment the event is for: `action.{env}`'s, else
        /// `detail.environment` (required with `action.deploy`).
        environment: String,
        service: String,
        task_definition: Option<String>,
        reason: Option<String>,
    },
    EcsDeployment {
        event_name: String,
        deployment_id: String,
        service_arn: String,
        reason: Option<String>,
        /// When ECS says the deployment changed (RFC 3339).
        updated_at: Option<String>,
    },
    ExecutionEnded(ExecutionEnded),
}

/// A Step Functions execution status change.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnded {
    pub execution_arn: String,
    /// The execution's name (`detail.name`, else the ARN's last part).
    pub name: String,
    pub state_machine_arn: String,
    pub status: String,
    /// The execution input, when EventBridge carried it: it leaves it out
    /// (`null`, `inputDetails.included: false`) when it is too large.
    pub input: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// Why an event is not acted on. None of these is worth a retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("event field {field} is missing")]
    Missing { field: String },
    #[error("event field {field} must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("no route for source {event_source:?} with detail-type {detail_type:?}")]
    UnknownSource {
        event_source: String,
        detail_type: String,
    },
    #[error("ignored: {0}")]
    Ignored(String),
    /// A manual deploy that could be meant for any environment.
    #[error("manual deploy names no environment: send source action.{{env}} or detail.environment with action.deploy")]
    NoEnvironment,
    #[error("manual deploy source {event_source} is for {from_source} but detail.environment is {from_detail}")]
    ConflictingEnvironment {
        event_source: String,
        from_source: String,
        from_detail: String,
    },
}

struct Fields<'a> {
    root: &'a Value,
}

impl<'a> Fields<'a> {
    fn get(&self, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(self.root, |value, part| value.get(part))
    }

    fn string(&self, path: &str) -> Result<String, EventError> {
        match self.get(path) {
            None | Some(Value::Null) => Err(EventError::Missing {
                field: path.to_owned(),
            }),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(EventError::Missing {
                field: path.to_owned(),
            }),
            Some(_) => Err(EventError::WrongType {
                field: path.to_owned(),
                expected: "a string",
            }),
        }
    }

    fn optional(&self, path: &str) -> Result<Option<String>, EventError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(EventError::WrongType {
                field: path.to_owned(),
                expected: "a string",
            }),
        }
    }
}

/// Parses an EventBridge event into its envelope and trigger.
pub fn parse(event: &Value) -> Result<(Envelope, Trigger), EventError> {
    let f = Fields { root: event };
    if !event.is_object() {
        return Err(EventError::WrongType {
            field: "event".into(),
            expected: "a JSON object",
        });
    }
    let envelope = Envelope {
        id: f.string("id")?,
        source: f.string("source")?,
        detail_type: f.string("detail-type")?,
        resources: match f.get("resources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(_) => {
                return Err(EventError::WrongType {
                    field: "resources".into(),
                    expected: "an array of strings",
                })
            }
        },
    };
    match f.get("detail") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => {
            return Err(EventError::Missing {
                field: "detail".into(),
            })
        }
        Some(_) => {
            return Err(EventError::WrongType {
                field: "detail".into(),
                expected: "an object",
            })
        }
    }
    let trigger = match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        ("aws.ecr", "ECR Image Action") => {
            let action = f.string("detail.action-type")?;
            let result = f.string("detail.result")?;
            if action != "PUSH" || result != "SUCCESS" {
                return Err(EventError::Ignored(format!(
                    "ECR {action} {result} is not a successful push"
                )));
            }
            Trigger::ImagePushed {
                repository: f.string("detail.repository-name")?,
                digest: f.string("detail.image-digest")?,
                tag: f.optional("detail.image-tag")?,
            }
        }
        ("aws.ssm", "Parameter Store Change") => Trigger::ParameterChanged {
            name: f.string("detail.name")?,
            operation: f.string("detail.operation")?,
        },
        ("aws.s3", "AWS API Call via CloudTrail") => {
            let operation = f.string("detail.eventName")?;
            if operation != "PutObject" && operation != "DeleteObject" {
                return Err(EventError::Ignored(format!(
                    "S3 {operation} does not change an env file"
                )));
            }
            Trigger::EnvFileChanged {
                bucket: f.string("detail.requestParameters.bucketName")?,
                key: f.string("detail.requestParameters.key")?,
                operation,
            }
        }
        ("aws.ecs", "ECS Deployment State Change") => Trigger::EcsDeployment {
            event_name: f.string("detail.eventName")?,
            deployment_id: f.string("detail.deploymentId")?,
            service_arn: envelope.resources.first().cloned().ok_or_else(|| {
                EventError::Missing {
                    field: "resources[0]".into(),
                }
            })?,
            reason: f.optional("detail.reason")?,
            updated_at: f.optional("detail.updatedAt")?,
        },
        ("aws.states", "Step Functions Execution Status Change") => {
            let execution_arn = f.string("detail.executionArn")?;
            let name = match f.optional("detail.name")? {
                Some(name) => name,
                None => execution_arn
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            };
            Trigger::ExecutionEnded(ExecutionEnded {
                execution_arn,
                name,
                state_machine_arn: f.string("detail.stateMachineArn")?,
                status: f.string("detail.status")?,
                input: f
                    .optional("detail.input")?
                    .and_then(|raw| serde_json::from_str(&raw).ok()),
                error: f.optional("detail.error")?,
                cause: f.optional("detail.cause")?,
            })
        }
        (source, _) if source.starts_with("action.") => {
            let service = f.string("detail.service")?;
            let task_definition = f.optional("detail.task_definition")?;
            let reason = f.optional("detail.reason")?;
            let named = f.optional("detail.environment")?;
            let from_source = source
                .strip_prefix("action.")
                .filter(|env| !env.is_empty() && *env != "deploy");
            let environment = match (from_source, named) {
                (None, None) => return Err(EventError::NoEnvironment),
                (None, Some(named)) => named,
                (Some(env), Some(named)) if named != env => {
                    return Err(EventError::ConflictingEnvironment {
                        event_source: source.to_owned(),
                        from_source: env.to_owned(),
                        from_detail: named,
                    })
                }
                (Some(env), _) => env.to_owned(),
            };
            Trigger::Manual {
                environment,
                service,
                task_definition,
                reason,
            }
        }
        (source, detail_type) => {
            return Err(EventError::UnknownSource {
                event_source: source.to_owned(),
                detail_type: detail_type.to_owned(),
            })
        }
    };
    Ok((envelope, trigger))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({
            "version": "0", "id": "e-1", "detail-type": detail_type, "source": source,
            "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        })
    }

    #[test]
    fn ecr_push_is_parsed_and_other_actions_are_ignored() {
        let push = event(
            "aws.ecr",
            "ECR Image Action",
            json!({"result": "SUCCESS", "repository-name": "shop_service_api", "image-digest": "sha256:1", "action-type": "PUSH", "image-tag": "v1"}),
        );
        let (_, trigger) = parse(&push).unwrap();
        assert_eq!(
            trigger,
            Trigger::ImagePushed {
                repository: "shop_service_api".into(),
                digest: "sha256:1".into(),
                tag: Some("v1".into())
            }
        );
        let delete = event(
            "aws.ecr",
            "ECR Image Action",
            json!({"result": "SUCCESS", "action-type": "DELETE"}),
        );
        assert!(matches!(parse(&delete), Err(EventError::Ignored(_))));
    }

    #[test]
    fn an_execution_status_change_without_input_keeps_its_name() {
        // EventBridge's shape when the input was too large to include.
        let arn = "arn:aws:states:us-east-1:123456789012:execution:dev-deployer-deployment:shop-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa";
        let mut ended = event(
            "aws.states",
            "Step Functions Execution Status Change",
            json!({"executionArn": arn, "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:dev-deployer-deployment",
                   "name": "shop-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa", "status": "TIMED_OUT", "startDate": 1_700_000_000_000u64,
                   "stopDate": 1_700_000_100_000u64, "input": null, "output": null,
                   "inputDetails": {"included": false}, "outputDetails": null, "error": null, "cause": null}),
        );
        let (_, Trigger::ExecutionEnded(parsed)) = parse(&ended).unwrap() else {
            panic!("not an execution status change");
        };
        assert_eq!(parsed.name, "shop-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa");
        assert_eq!(parsed.input, None);
        assert_eq!(parsed.status, "TIMED_OUT");
        ended["detail"].as_object_mut().unwrap().remove("name");
        ended["detail"].as_object_mut().unwrap().remove("input");
        let (_, Trigger::ExecutionEnded(parsed)) = parse(&ended).unwrap() else {
            panic!("not an execution status change");
        };
        assert_eq!(parsed.name, "shop-dev-2KqFQ6jRk1aaaaaaaaaaaaaaaaa");
    }

    #[test]
    fn a_manual_deploy_names_its_environment_by_source_or_detail() {
        let environment =
            |source: &str, detail: Value| match parse(&event(source, "DEPLOY", detail)) {
                Ok((_, Trigger::Manual { environment, .. })) => Ok(environment),
                Ok((_, other)) => panic!("not a manual deploy: {other:?}"),
                Err(err) => Err(err.to_string()),
            };
        assert_eq!(
            environment("action.prd", json!({"service": "api"})),
            Ok("prd".into())
        );
        assert_eq!(
            environment(
                "action.deploy",
                json!({"service": "api", "environment": "dev"})
            ),
            Ok("dev".into())
        );
        assert_eq!(
            environment(
                "action.dev",
                json!({"service": "api", "environment": "dev"})
            ),
            Ok("dev".into())
        );
        assert_eq!(
            environment("action.deploy", json!({"service": "api"})),
            Err("manual deploy names no environment: send source action.{env} or detail.environment with action.deploy".into())
        );
        assert_eq!(
            environment(
                "action.dev",
                json!({"service": "api", "environment": "prd"})
            ),
            Err("manual deploy source action.dev is for dev but detail.environment is prd".into())
        );
    }

    #[test]
    fn malformed_events_name_the_field() {
        let no_detail =
            json!({"id": "x", "source": "aws.ssm", "detail-type": "Parameter Store Change"});
        assert_eq!(
            parse(&no_detail).unwrap_err().to_string(),
            "event field detail is missing"
        );
        let wrong = event("action.deploy", "DEPLOY", json!({"service": 42}));
        assert_eq!(
            parse(&wrong).unwrap_err().to_string(),
            "event field detail.service must be a string"
        );
        let unknown = event("aws.health", "AWS Health Event", json!({}));
        assert!(matches!(
            parse(&unknown),
            Err(EventError::UnknownSource { .. })
        ));
        assert!(parse(&json!("text")).is_err());
    }
}
