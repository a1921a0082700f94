//! Running one rule file through cfn-guard, and reading its structured
//! report back as findings.
//!
//! cfn-guard's library exposes its CLI commands. This uses `validate` with
//! `--payload --structured --output-format json`: rules and data go in as
//! strings, and the report that comes out is the JSON the CLI prints. Its
//! report types are private to the crate, so the report is read as
//! `serde_json::Value`, by the shape the CLI documents.

use std::io::Cursor;

use cfn_guard::commands::validate::{parse_rules, OutputFormatType, ShowSummaryType};
use cfn_guard::commands::{Executable, ERROR_STATUS_CODE};
use cfn_guard::utils::reader::{ReadBuffer, Reader};
use cfn_guard::utils::writer::{WriteBuffer, Writer};
use cfn_guard::{CommandBuilder, ValidateBuilder};
use serde_json::Value;

use crate::{Finding, PolicyError, RuleFile};

/// Whether the rule file is valid Guard, and holds any rules: a file with
/// nothing but comments (which turns a default rule off) holds none, and
/// is not run.
pub(crate) fn parse(rule: &RuleFile) -> Result<bool, PolicyError> {
    match parse_rules(&rule.text, &rule.file_name()) {
        Ok(parsed) => Ok(parsed.is_some()),
        Err(e) => Err(PolicyError::Rule {
            name: rule.file_name(),
            reason: e.to_string(),
        }),
    }
}

/// The findings of one rule file on the template (`data`, JSON text), each
/// at the file's severity. The rule file has been [`parse`]d.
pub(crate) fn evaluate(rule: &RuleFile, data: &str) -> Result<Vec<Finding>, PolicyError> {
    let failed = |reason: String| PolicyError::Evaluation {
        name: rule.file_name(),
        reason,
    };

    let payload = serde_json::json!({ "rules": [rule.text], "data": [data] }).to_string();
    let mut input = Reader::new(ReadBuffer::Cursor(Cursor::new(payload.into_bytes())));
    // Guard writes parse errors and notices to the second buffer; the rule
    // text was parsed above, so nothing there is needed.
    let mut output =
        Writer::new_with_err(WriteBuffer::Vec(Vec::new()), WriteBuffer::Vec(Vec::new()))
            .map_err(|e| failed(e.to_string()))?;
    let validate = ValidateBuilder::default()
        .payload(true)
        .structured(true)
        .output_format(OutputFormatType::JSON)
        .show_summary(vec![ShowSummaryType::None])
        .try_build()
        .map_err(|e| failed(e.to_string()))?;
    let status = validate
        .execute(&mut output, &mut input)
        .map_err(|e| failed(e.to_string()))?;
    if status == ERROR_STATUS_CODE {
        return Err(failed("Guard reported an error".to_string()));
    }
    let report = output.into_string().map_err(|e| failed(e.to_string()))?;
    let report: Value = serde_json::from_str(&report)
        .map_err(|e| failed(format!("Guard's report is not JSON: {e}")))?;
    let Value::Array(data_files) = report else {
        return Err(failed(
            "Guard's report is not a list of data files".to_string(),
        ));
    };

    let mut findings = Vec::new();
    for data_file in &data_files {
        let not_compliant = data_file.get("not_compliant").and_then(Value::as_array);
        for reported in not_compliant.into_iter().flatten() {
            // Clauses outside any `rule` block are reported as one rule,
            // `<file>/default`, where <file> is Guard's name for the
            // payload (RULES_STDIN[1]): the finding names the rule file.
            let rule_name = reported
                .get("Rule")
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .filter(|name| !name.ends_with("/default"))
                .unwrap_or(&rule.name);
            let mut failures = Vec::new();
            failed_checks(reported, &mut failures);
            findings.extend(failures.into_iter().map(|failure| Finding {
                rule: rule_name.to_string(),
                message: failure.message(),
                resource: failure.resource,
                severity: rule.severity,
            }));
        }
    }
    Ok(findings)
}

/// One failed check, or one failed `or` of checks.
#[derive(Debug, Default)]
struct FailedCheck {
    resource: String,
    /// The rule's `<< ... >>` message for the check, if it has one.
    custom_message: Option<String>,
    /// Guard's account of the check ("Check was not compliant as ...").
    description: Option<String>,
}

impl FailedCheck {
    fn message(&self) -> String {
        self.custom_message
            .clone()
            .or_else(|| self.description.clone())
            .unwrap_or_else(|| "the rule's checks failed".to_string())
    }
}

/// The failed checks under a node of Guard's report (a `Rule`, `Block`,
/// `Disjunctions` or `Clause`).
fn failed_checks(node: &Value, out: &mut Vec<FailedCheck>) {
    let Some((kind, body)) = node.as_object().and_then(|o| o.iter().next()) else {
        return;
    };
    match kind.as_str() {
        "Rule" => {
            for check in body
                .get("checks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                failed_checks(check, out);
            }
        }
        // Guard attaches a `<< >>` message to the last clause of an `or`
        // only, and reports every clause of a failed `or`: one failure per
        // resource, with the message found on any of its clauses.
        "Disjunctions" => {
            let mut clauses = Vec::new();
            for check in body
                .get("checks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                failed_checks(check, &mut clauses);
            }
            let mut merged: Vec<FailedCheck> = Vec::new();
            for clause in clauses {
                match merged.iter_mut().find(|m| m.resource == clause.resource) {
                    Some(m) => {
                        m.custom_message = m.custom_message.take().or(clause.custom_message);
                        m.description = m.description.take().or(clause.description);
                    }
                    None => merged.push(clause),
                }
            }
            out.extend(merged);
        }
        // A clause is {"Clause": {"Unary" | "Binary": report}}.
        "Clause" => {
            if let Some(report) = body.as_object().and_then(|o| o.values().next()) {
                out.push(failed_check(report));
            }
        }
        _ => out.push(failed_check(body)),
    }
}

fn failed_check(report: &Value) -> FailedCheck {
    let messages = report.get("messages");
    let text = |key: &str| {
        messages
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(one_line)
            .filter(|s| !s.is_empty())
    };
    let description = text("error_message").map(|s| without_locations(&s));
    // A check Guard could not make (a value its functions cannot read) has
    // no `path`; its description names the value's path.
    let resource = first_path(report)
        .and_then(resource_of)
        .or_else(|| {
            let description = description.as_deref()?;
            resource_of(&description[description.find("/Resources/")?..])
        })
        .unwrap_or_default();
    FailedCheck {
        resource,
        custom_message: text("custom_message"),
        description,
    }
}

/// The first `path` in a check's report: the value the check was made on
/// (`from`, or where an unresolved query stopped).
fn first_path(report: &Value) -> Option<&str> {
    match report {
        Value::Object(object) => {
            object
                .iter()
                .find_map(|(key, value)| match (key.as_str(), value) {
                    ("path", Value::String(path)) if !path.is_empty() => Some(path.as_str()),
                    _ => first_path(value),
                })
        }
        Value::Array(items) => items.iter().find_map(first_path),
        _ => None,
    }
}

/// `DeployRole` from `/Resources/DeployRole/Properties/...`: a logical id
/// is alphanumeric.
fn resource_of(path: &str) -> Option<String> {
    let id: String = path
        .strip_prefix("/Resources/")?
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// A `<< >>` message written over several indented lines, as one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Guard's description without its `[L:3,C:14]` positions: they are
/// positions in the resolved JSON this crate gave Guard, not in the
/// template anyone wrote. A literal in the rule has only a position for a
/// path, and loses its empty `Path=`.
fn without_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[L:") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        match after.find(']') {
            Some(end)
                if after[1..end]
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, 'L' | 'C' | ':' | ',')) =>
            {
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("[L:");
                rest = &after[3..];
            }
        }
    }
    out.push_str(rest);
    out.replace("[Path= Value=", "[Value=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_logical_id_in_the_path() {
        assert_eq!(
            resource_of("/Resources/DeployRole/Properties/Policies/0").as_deref(),
            Some("DeployRole")
        );
        assert_eq!(resource_of("/Resources/Bucket").as_deref(), Some("Bucket"));
        assert_eq!(
            resource_of("/Resources/Bucket` when handling").as_deref(),
            Some("Bucket")
        );
        assert_eq!(resource_of("/Parameters/Env"), None);
    }

    #[test]
    fn positions_in_the_resolved_json_are_left_out_of_descriptions() {
        assert_eq!(
            without_locations("value [Path=/Resources/R/A[L:1,C:154] Value=\"*\"] to [Path=[L:0,C:0] Value=1] [L:x]"),
            "value [Path=/Resources/R/A Value=\"*\"] to [Value=1] [L:x]"
        );
    }
}
