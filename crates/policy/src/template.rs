//! The template as the rules see it: parsed from JSON or YAML into JSON, with
//! references to its parameters replaced by the deploy's values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::PolicyError;

/// The template as JSON text, each `{"Ref": P}` to a parameter `P` replaced
/// by `parameters[P]`, or else by `P`'s `Default`.
pub(crate) fn resolved_json(
    template: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<String, PolicyError> {
    let mut document = parse(template)?;
    let values = parameter_values(&document, parameters);
    resolve_refs(&mut document, &values);
    serde_json::to_string(&document).map_err(|e| PolicyError::Template {
        reason: e.to_string(),
    })
}

fn parse(template: &str) -> Result<Value, PolicyError> {
    let document = match serde_json::from_str::<Value>(template) {
        Ok(document) => document,
        // Text that starts like JSON is JSON with a mistake: the JSON
        // parser's message points at it, the YAML parser's would not.
        Err(e) if template.trim_start().starts_with('{') => {
            return Err(PolicyError::Template {
                reason: format!("invalid JSON: {e}"),
            })
        }
        Err(_) => {
            let yaml = serde_yaml::from_str::<serde_yaml::Value>(template).map_err(|e| {
                PolicyError::Template {
                    reason: format!("invalid YAML: {e}"),
                }
            })?;
            from_yaml(yaml)?
        }
    };
    match document.get("Resources") {
        Some(Value::Object(_)) => Ok(document),
        Some(_) => Err(PolicyError::Template {
            reason: "Resources is not a mapping of logical ids to resources".to_string(),
        }),
        None if document.is_object() => Err(PolicyError::Template {
            reason: "it has no Resources section".to_string(),
        }),
        None => Err(PolicyError::Template {
            reason: "it is not a JSON object or YAML mapping".to_string(),
        }),
    }
}

/// YAML to JSON, with CloudFormation's short-form tags in their long form:
/// `!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`,
/// and any other `!Name v` is `{"Fn::Name": v}`.
fn from_yaml(yaml: serde_yaml::Value) -> Result<Value, PolicyError> {
    Ok(match yaml {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => yaml_number(&n),
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(from_yaml).collect::<Result<_, _>>()?)
        }
        serde_yaml::Value::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                object.insert(yaml_key(key)?, from_yaml(value)?);
            }
            Value::Object(object)
        }
        serde_yaml::Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let function = tag.trim_start_matches('!');
            let argument = from_yaml(tagged.value)?;
            let (key, argument) = match (function, argument) {
                ("Ref" | "Condition", argument) => (function.to_string(), argument),
                ("GetAtt", Value::String(dotted)) => {
                    let (resource, attribute) =
                        dotted
                            .split_once('.')
                            .ok_or_else(|| PolicyError::Template {
                                reason: format!("!GetAtt {dotted} names no attribute"),
                            })?;
                    (
                        "Fn::GetAtt".to_string(),
                        Value::Array(vec![resource.into(), attribute.into()]),
                    )
                }
                (_, argument) => (format!("Fn::{function}"), argument),
            };
            Value::Object(Map::from_iter([(key, argument)]))
        }
    })
}

fn yaml_number(n: &serde_yaml::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        // .nan and .inf have no JSON form; CloudFormation would read them
        // as strings too.
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(n.to_string()))
    }
}

fn yaml_key(key: serde_yaml::Value) -> Result<String, PolicyError> {
    match key {
        serde_yaml::Value::String(s) => Ok(s),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        other => Err(PolicyError::Template {
            reason: format!("a mapping key is not a string: {other:?}"),
        }),
    }
}

/// The value each template parameter has for this deploy, typed as
/// CloudFormation types it: a `Number` is a number, a list type a list.
/// Parameters with neither a supplied value nor a `Default` are left out,
/// and so are SSM parameter types, whose value is the name of an SSM
/// parameter and not the value the stack will see.
fn parameter_values(
    document: &Value,
    supplied: &BTreeMap<String, String>,
) -> BTreeMap<String, Value> {
    let Some(Value::Object(declared)) = document.get("Parameters") else {
        return BTreeMap::new();
    };
    declared
        .iter()
        .filter_map(|(name, declaration)| {
            let kind = declaration
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or("String");
            if kind.starts_with("AWS::SSM::Parameter::Value") {
                return None;
            }
            let text = match (supplied.get(name), declaration.get("Default")) {
                (Some(value), _) => value.clone(),
                (None, Some(Value::String(default))) => default.clone(),
                (None, Some(Value::Number(n))) => n.to_string(),
                (None, Some(Value::Bool(b))) => b.to_string(),
                // A list given as a list (YAML lets a template do that).
                (None, Some(list @ Value::Array(_))) => return Some((name.clone(), list.clone())),
                _ => return None,
            };
            Some((name.clone(), typed(kind, &text)))
        })
        .collect()
}

fn typed(kind: &str, text: &str) -> Value {
    let is_list = kind == "CommaDelimitedList" || kind.starts_with("List<");
    let is_number = kind == "Number" || kind == "List<Number>";
    let item = |s: &str| {
        let s = s.trim();
        match s.parse::<serde_json::Number>() {
            Ok(n) if is_number => Value::Number(n),
            _ => Value::String(s.to_string()),
        }
    };
    if is_list {
        Value::Array(text.split(',').map(item).collect())
    } else if is_number {
        item(text)
    } else {
        Value::String(text.to_string())
    }
}

fn resolve_refs(value: &mut Value, parameters: &BTreeMap<String, Value>) {
    match value {
        Value::Object(object) => {
            if object.len() == 1 {
                if let Some(Value::String(name)) = object.get("Ref") {
                    if let Some(resolved) = parameters.get(name) {
                        *value = resolved.clone();
                        return;
                    }
                }
            }
            for child in object.values_mut() {
                resolve_refs(child, parameters);
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_refs(item, parameters);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolved(template: &str, parameters: &[(&str, &str)]) -> Value {
        let parameters = parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::from_str(&resolved_json(template, &parameters).unwrap()).unwrap()
    }

    #[test]
    fn yaml_short_form_tags_become_their_long_form() {
        let document = resolved(
            "Resources:\n  R:\n    Type: T\n    Properties:\n      A: !Ref Other\n      B: !Sub '${AWS::StackName}-x'\n      C: !GetAtt Bucket.Arn\n      D: !If [Cond, 1, 2]\n      E: !Select [0, !GetAZs '']\n",
            &[],
        );
        assert_eq!(
            document["Resources"]["R"]["Properties"],
            json!({
                "A": {"Ref": "Other"},
                "B": {"Fn::Sub": "${AWS::StackName}-x"},
                "C": {"Fn::GetAtt": ["Bucket", "Arn"]},
                "D": {"Fn::If": ["Cond", 1, 2]},
                "E": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
            })
        );
    }

    #[test]
    fn parameter_refs_take_the_supplied_value_then_the_default() {
        let template = json!({
            "Parameters": {
                "Supplied": {"Type": "String", "Default": "d1"},
                "Defaulted": {"Type": "String", "Default": "d2"},
                "Port": {"Type": "Number", "Default": 22},
                "Names": {"Type": "CommaDelimitedList", "Default": "a, b"},
                "Unset": {"Type": "String"},
                "Image": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/ami"},
            },
            "Resources": {"R": {"Type": "T", "Properties": {
                "A": {"Ref": "Supplied"}, "B": {"Ref": "Defaulted"}, "C": {"Ref": "Port"},
                "D": {"Ref": "Names"}, "E": {"Ref": "Unset"}, "F": {"Ref": "Image"},
                "G": {"Ref": "OtherResource"}, "H": [{"Ref": "Supplied"}],
            }}},
        });
        let document = resolved(&template.to_string(), &[("Supplied", "s")]);
        assert_eq!(
            document["Resources"]["R"]["Properties"],
            json!({
                "A": "s", "B": "d2", "C": 22, "D": ["a", "b"], "E": {"Ref": "Unset"},
                "F": {"Ref": "Image"}, "G": {"Ref": "OtherResource"}, "H": ["s"],
            })
        );
    }

    #[test]
    fn a_template_without_resources_is_refused() {
        for text in [
            "{\"Resources\": ",
            "Resources: [a",
            "just words",
            "{}",
            "Resources: 3",
        ] {
            assert!(
                matches!(
                    resolved_json(text, &BTreeMap::new()),
                    Err(PolicyError::Template { .. })
                ),
                "{text:?} was accepted"
            );
        }
    }
}
