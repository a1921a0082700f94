//! Direct invocation: another service (the editing sessions) asks for a
//! build and waits for the result.
//!
//! ```json
//! {"repository": "acme/site", "branch": "feature/pricing", "environment": "staging",
//!  "session_id": "s-4f1c", "triggered_by": "hermes"}
//! ```
//!
//! `session_id` is optional (null or absent). Unknown fields are refused
//! rather than dropped, so a misspelt field fails loudly; an approval
//! claimed in the request is refused too, because production's approval is
//! never taken from the caller (see [`BuildRequest::needs_approval`]).

use serde_json::{Map, Value};

use super::{BuildRequest, Environment, NameError, Origin, UnknownEnvironment};

const FIELDS: [&str; 5] = [
    "repository",
    "branch",
    "environment",
    "session_id",
    "triggered_by",
];

/// Fields that would claim an approval; none is ever honoured.
const APPROVAL_FIELDS: [&str; 3] = ["approved", "approval", "approved_by"];

/// Session ids become part of an idempotency key.
const MAX_SESSION_ID: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectRequestError {
    #[error("the direct invocation payload is not a JSON object")]
    NotAnObject,
    #[error("field {field:?} is missing")]
    Missing { field: &'static str },
    #[error("field {field:?} must be a string")]
    NotAString { field: &'static str },
    #[error("field {field:?} is empty")]
    Empty { field: &'static str },
    #[error("field \"repository\": {0}")]
    Repository(#[source] NameError),
    #[error("field \"branch\": {0}")]
    Branch(#[source] NameError),
    #[error("field \"environment\": {0}")]
    Environment(#[source] UnknownEnvironment),
    #[error("field \"session_id\" is longer than 128 characters or holds control characters")]
    InvalidSessionId,
    #[error("field {field:?} is refused: production approval is never taken from the request; a production build waits for an approval")]
    ApprovalInRequest { field: String },
    #[error("field {field:?} is not part of a direct invocation (expected repository, branch, environment, session_id, triggered_by)")]
    UnknownField { field: String },
}

/// Reads a direct invocation's payload into a build request.
pub fn parse_direct(payload: &Value) -> Result<BuildRequest, DirectRequestError> {
    let object = payload.as_object().ok_or(DirectRequestError::NotAnObject)?;
    let shown = |field: &str| field.chars().take(40).collect::<String>();
    if let Some(field) = object
        .keys()
        .find(|field| APPROVAL_FIELDS.contains(&field.to_ascii_lowercase().as_str()))
    {
        return Err(DirectRequestError::ApprovalInRequest {
            field: shown(field),
        });
    }
    if let Some(field) = object
        .keys()
        .find(|field| !FIELDS.contains(&field.as_str()))
    {
        return Err(DirectRequestError::UnknownField {
            field: shown(field),
        });
    }

    let repository = required(object, "repository")?
        .parse()
        .map_err(DirectRequestError::Repository)?;
    let branch = required(object, "branch")?
        .parse()
        .map_err(DirectRequestError::Branch)?;
    let environment: Environment = required(object, "environment")?
        .parse()
        .map_err(DirectRequestError::Environment)?;
    let triggered_by = required(object, "triggered_by")?.trim().to_owned();
    let session_id = match object.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.trim().is_empty() => {
            return Err(DirectRequestError::Empty {
                field: "session_id",
            })
        }
        Some(Value::String(id)) => {
            if id.len() > MAX_SESSION_ID || id.chars().any(char::is_control) {
                return Err(DirectRequestError::InvalidSessionId);
            }
            Some(id.trim().to_owned())
        }
        Some(_) => {
            return Err(DirectRequestError::NotAString {
                field: "session_id",
            })
        }
    };

    Ok(BuildRequest::new(
        repository,
        branch,
        None,
        environment,
        triggered_by,
        Origin::Direct { session_id },
    ))
}

fn required<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, DirectRequestError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(DirectRequestError::Missing { field }),
        Some(Value::String(value)) if value.trim().is_empty() => {
            Err(DirectRequestError::Empty { field })
        }
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(DirectRequestError::NotAString { field }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::trigger::Branch;

    fn payload() -> Value {
        json!({
            "repository": "acme/site",
            "branch": "thread-4f1c-1772451000",
            "environment": "staging",
            "session_id": "4f1c",
            "triggered_by": "hermes"
        })
    }

    fn main() -> Branch {
        "main".parse().unwrap()
    }

    #[test]
    fn a_staging_request_is_read_with_its_session() {
        let request = parse_direct(&payload()).unwrap();
        assert_eq!(request.repository().to_string(), "acme/site");
        assert_eq!(request.branch().as_str(), "thread-4f1c-1772451000");
        assert_eq!(request.environment(), Environment::Staging);
        assert_eq!(request.commit(), None);
        assert_eq!(request.triggered_by(), "hermes");
        assert_eq!(
            request.origin(),
            &Origin::Direct {
                session_id: Some("4f1c".to_owned())
            }
        );
        assert_eq!(
            request.dedupe_key().unwrap().as_str(),
            "direct/4f1c/build-staging"
        );
        assert!(!request.needs_approval(&main()));
    }

    #[test]
    fn production_by_direct_invocation_needs_approval_even_for_the_production_branch() {
        let mut production = payload();
        production["environment"] = json!("production");
        production["branch"] = json!("main");
        let request = parse_direct(&production).unwrap();
        assert_eq!(request.environment(), Environment::Production);
        assert!(request.needs_approval(&main()));
    }

    #[test]
    fn a_claimed_approval_is_refused_not_honoured() {
        for field in ["approved", "Approved", "approval", "approved_by"] {
            let mut claimed = payload();
            claimed["environment"] = json!("production");
            claimed[field] = json!(true);
            assert_eq!(
                parse_direct(&claimed).unwrap_err(),
                DirectRequestError::ApprovalInRequest {
                    field: field.to_owned()
                }
            );
        }
    }

    #[test]
    fn without_a_session_there_is_no_dedupe_key() {
        for absent in [None, Some(Value::Null)] {
            let mut sessionless = payload();
            let object = sessionless.as_object_mut().unwrap();
            match absent {
                None => object.remove("session_id"),
                Some(null) => object.insert("session_id".to_owned(), null),
            };
            let request = parse_direct(&sessionless).unwrap();
            assert_eq!(request.origin(), &Origin::Direct { session_id: None });
            assert_eq!(request.dedupe_key(), None);
        }
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in ["repository", "branch", "environment", "triggered_by"] {
            let mut incomplete = payload();
            incomplete.as_object_mut().unwrap().remove(field);
            let error = parse_direct(&incomplete).unwrap_err();
            assert_eq!(error, DirectRequestError::Missing { field });
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn wrong_types_and_empty_values_name_the_field() {
        let mut number = payload();
        number["branch"] = json!(42);
        assert_eq!(
            parse_direct(&number).unwrap_err(),
            DirectRequestError::NotAString { field: "branch" }
        );
        let mut session = payload();
        session["session_id"] = json!({"id": 1});
        assert_eq!(
            parse_direct(&session).unwrap_err(),
            DirectRequestError::NotAString {
                field: "session_id"
            }
        );
        let mut blank = payload();
        blank["triggered_by"] = json!("  ");
        assert_eq!(
            parse_direct(&blank).unwrap_err(),
            DirectRequestError::Empty {
                field: "triggered_by"
            }
        );
        assert_eq!(
            parse_direct(&json!(["acme/site"])).unwrap_err(),
            DirectRequestError::NotAnObject
        );
    }

    #[test]
    fn invalid_values_say_which_field_and_why() {
        let mut environment = payload();
        environment["environment"] = json!("development");
        let error = parse_direct(&environment).unwrap_err();
        assert!(matches!(error, DirectRequestError::Environment(_)));
        assert!(error.to_string().contains("\"environment\""), "{error}");

        let mut repository = payload();
        repository["repository"] = json!("https://github.com/acme/site.git");
        let error = parse_direct(&repository).unwrap_err();
        assert!(matches!(error, DirectRequestError::Repository(_)));
        assert!(
            error.to_string().starts_with("field \"repository\""),
            "{error}"
        );

        let mut branch = payload();
        branch["branch"] = json!("--upload-pack=touch /tmp/x");
        assert!(matches!(
            parse_direct(&branch).unwrap_err(),
            DirectRequestError::Branch(_)
        ));

        let mut session = payload();
        session["session_id"] = json!("x".repeat(200));
        assert_eq!(
            parse_direct(&session).unwrap_err(),
            DirectRequestError::InvalidSessionId
        );
    }

    #[test]
    fn a_misspelt_field_fails_loudly() {
        let mut camel = payload();
        let object = camel.as_object_mut().unwrap();
        let session = object.remove("session_id").unwrap();
        object.insert("sessionId".to_owned(), session);
        assert_eq!(
            parse_direct(&camel).unwrap_err(),
            DirectRequestError::UnknownField {
                field: "sessionId".to_owned()
            }
        );
    }
}
