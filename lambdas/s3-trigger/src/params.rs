//! Stack parameter files: `cloudformation-params.json` and the per-environment
//! override `cloudformation-params.{env}.json`.

use std::collections::BTreeMap;

/// Largest parameter file accepted. CloudFormation allows 200 parameters of
/// 4 KiB each; anything bigger than this is a mistake, not a deployment.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// CloudFormation's own limit on parameters per stack.
pub const MAX_PARAMS: usize = 200;

pub type Parameters = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("{key}: parameter file is {size} bytes; the limit is {MAX_PARAMS_BYTES} bytes")]
    TooLarge { key: String, size: usize },
    #[error("{key}: parameter file must be a JSON object of string values, like {{\"Name\": \"value\"}}: {reason}")]
    NotObjectOfStrings { key: String, reason: String },
    #[error("{key}: {count} parameters; CloudFormation allows at most {MAX_PARAMS}")]
    TooMany { key: String, count: usize },
    #[error("{key}: parameter name {name:?} must be 1-255 letters or digits")]
    BadName { key: String, name: String },
}

/// Parses one parameter file.
pub fn parse(key: &str, bytes: &[u8]) -> Result<Parameters, ParamsError> {
    if bytes.len() > MAX_PARAMS_BYTES {
        return Err(ParamsError::TooLarge {
            key: key.to_owned(),
            size: bytes.len(),
        });
    }
    let not_object = |reason: String| ParamsError::NotObjectOfStrings {
        key: key.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| not_object(format!("invalid JSON: {e}")))?;
    let object = match value {
        serde_json::Value::Object(object) => object,
        other => return Err(not_object(format!("found {}", json_kind(&other)))),
    };
    if object.len() > MAX_PARAMS {
        return Err(ParamsError::TooMany {
            key: key.to_owned(),
            count: object.len(),
        });
    }
    let mut params = Parameters::new();
    for (name, value) in object {
        if name.is_empty() || name.len() > 255 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ParamsError::BadName {
                key: key.to_owned(),
                name,
            });
        }
        match value {
            serde_json::Value::String(s) => {
                params.insert(name, s);
            }
            other => {
                return Err(not_object(format!(
                    "value of {name:?} is {}",
                    json_kind(&other)
                )))
            }
        }
    }
    Ok(params)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The environment an override file is for: `cloudformation-params.{env}.json`.
pub fn override_env(file: &str) -> Option<&str> {
    file.strip_prefix("cloudformation-params.")?
        .strip_suffix(".json")
        .filter(|env| !env.is_empty())
}

/// Base parameters with the override's values on top.
pub fn merge(mut base: Parameters, overrides: Parameters) -> Parameters {
    base.extend(overrides);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_values_win_and_base_values_stay() {
        let base = parse("k", br#"{"A": "1", "B": "2"}"#).unwrap();
        let over = parse("k", br#"{"B": "3"}"#).unwrap();
        let merged = merge(base, over);
        assert_eq!(merged["A"], "1");
        assert_eq!(merged["B"], "3");
    }

    #[test]
    fn anything_but_an_object_of_strings_is_refused_with_the_key() {
        for bad in [
            &br#"["A"]"#[..],
            br#"{"A": 1}"#,
            br#"{"A": null}"#,
            b"not json",
            br#"{"a-b": "x"}"#,
        ] {
            let err = parse("shop/main/1.abcd/cloudformation-params.json", bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("shop/main/1.abcd/cloudformation-params.json"),
                "{err}"
            );
        }
        let big = format!("{{\"A\": \"{}\"}}", "x".repeat(MAX_PARAMS_BYTES));
        assert!(matches!(
            parse("k", big.as_bytes()),
            Err(ParamsError::TooLarge { .. })
        ));
    }

    #[test]
    fn override_env_is_read_from_the_file_name() {
        assert_eq!(override_env("cloudformation-params.prd.json"), Some("prd"));
        assert_eq!(override_env("cloudformation-params.json"), None);
        assert_eq!(override_env("cloudformation-params..json"), None);
    }
}
