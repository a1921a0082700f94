//! `policy`: the gate a CloudFormation template passes before it is
//! deployed. The template is checked against [CloudFormation Guard] rules,
//! with AWS's own engine (the `cfn-guard` crate), so rules are written in the
//! language the Guard CLI and the AWS Guard rules registry already use.
//!
//! # Rule files and their severity
//!
//! A rule file is Guard rule text under a file name that says how much a
//! broken rule matters:
//!
//! - `NAME.guard`: a **failure**. A template that breaks one of its rules is
//!   not deployed ([`Report::passed`] is false).
//! - `NAME.warn.guard`: a **warning**. The finding is reported and the deploy
//!   goes on.
//!
//! `NAME` (the file name without either suffix) identifies the file. The
//! built-in rules ([`default_rules`], the files in `crates/policy/rules/`)
//! can be overridden by an operator's file of the same `NAME`
//! ([`merge`]): the operator's file replaces the default whatever the
//! suffixes, so `s3_bucket_encryption.guard` with the same rule text turns
//! that warning into a failure, and a file with only a comment in it turns
//! the rule off. A file with a new `NAME` adds rules.
//!
//! A finding names the Guard rule (`rule NAME when ... { }`, which need not
//! be the file's `NAME`), the template's logical resource id it is about,
//! and the rule's custom message (`<< ... >>`), or Guard's own description of
//! the failed check when the rule has none.
//!
//! # What is checked
//!
//! The template (JSON or YAML, short-form tags such as `!Ref` included) is
//! checked as it will be deployed: every `{"Ref": "P"}` to a template
//! parameter `P` is replaced by the value supplied for the deploy, or `P`'s
//! `Default`, so a rule sees the value and not the reference.
//!
//! [CloudFormation Guard]: https://docs.aws.amazon.com/cfn-guard/latest/ug/what-is-guard.html

mod guard;
mod template;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How much a broken rule matters: a failure stops the deploy, a warning
/// is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Fail,
    Warn,
}

/// One Guard rule file: its name (the file name without `.guard` or
/// `.warn.guard`), the severity its suffix gives, and its rule text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    pub name: String,
    pub severity: Severity,
    pub text: String,
}

const GUARD_SUFFIX: &str = ".guard";
const WARN_GUARD_SUFFIX: &str = ".warn.guard";

impl RuleFile {
    /// The file name this rule file goes by: `NAME.guard` or
    /// `NAME.warn.guard`.
    pub fn file_name(&self) -> String {
        match self.severity {
            Severity::Fail => format!("{}{GUARD_SUFFIX}", self.name),
            Severity::Warn => format!("{}{WARN_GUARD_SUFFIX}", self.name),
        }
    }
}

/// A rule file from its file name and text. `NAME.warn.guard` is a warning,
/// any other name a failure; a leading folder (an S3 key's prefix) is not
/// part of the name.
pub fn rule_file(file_name: &str, text: String) -> RuleFile {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let (name, severity) = if let Some(name) = base.strip_suffix(WARN_GUARD_SUFFIX) {
        (name, Severity::Warn)
    } else if let Some(name) = base.strip_suffix(GUARD_SUFFIX) {
        (name, Severity::Fail)
    } else {
        (base, Severity::Fail)
    };
    RuleFile {
        name: name.to_string(),
        severity,
        text,
    }
}

/// The built-in rules, shipped in `crates/policy/rules/` (docs/policy.md
/// says what each one checks).
pub fn default_rules() -> Vec<RuleFile> {
    const DEFAULTS: [(&str, &str); 5] = [
        (
            "iam_no_wildcard_action_resource.guard",
            include_str!("../rules/iam_no_wildcard_action_resource.guard"),
        ),
        (
            "s3_bucket_public_access_blocked.guard",
            include_str!("../rules/s3_bucket_public_access_blocked.guard"),
        ),
        (
            "security_group_no_open_admin_ports.guard",
            include_str!("../rules/security_group_no_open_admin_ports.guard"),
        ),
        (
            "s3_bucket_encryption.warn.guard",
            include_str!("../rules/s3_bucket_encryption.warn.guard"),
        ),
        (
            "log_group_retention.warn.guard",
            include_str!("../rules/log_group_retention.warn.guard"),
        ),
    ];
    let mut rules: Vec<RuleFile> = DEFAULTS
        .iter()
        .map(|(file_name, text)| rule_file(file_name, text.to_string()))
        .collect();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    rules
}

/// The rules in force: the defaults, with each operator file replacing the
/// default of the same name (to relax or tighten it) and the others added.
/// Sorted by name, so findings come out in the same order on every run.
pub fn merge(defaults: Vec<RuleFile>, operator: Vec<RuleFile>) -> Vec<RuleFile> {
    let mut by_name: BTreeMap<String, RuleFile> = defaults
        .into_iter()
        .map(|rule| (rule.name.clone(), rule))
        .collect();
    for rule in operator {
        by_name.insert(rule.name.clone(), rule);
    }
    by_name.into_values().collect()
}

/// One broken rule on one resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// The Guard rule's name (`rule NAME ...`).
    pub rule: String,
    /// The template's logical resource id, or empty when the failed check
    /// is not about one resource.
    pub resource: String,
    /// The rule's custom message, or Guard's description of the check.
    pub message: String,
    pub severity: Severity,
}

impl Finding {
    /// One line for a person: `rule R: resource X: message`.
    pub fn describe(&self) -> String {
        if self.resource.is_empty() {
            format!("rule {}: {}", self.rule, self.message)
        } else {
            format!(
                "rule {}: resource {}: {}",
                self.rule, self.resource, self.message
            )
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What the rules found in one template, each list sorted by rule,
/// resource and message, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub failures: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Report {
    /// True when no failure rule was broken; warnings do not stop a deploy.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The template cannot be read as a CloudFormation template.
    #[error("the template is not a valid CloudFormation template: {reason}")]
    Template { reason: String },
    /// A rule file is not valid Guard.
    #[error("policy rule file {name} does not parse: {reason}")]
    Rule { name: String, reason: String },
    /// Guard could not evaluate a rule file against the template, or gave
    /// back a report this crate cannot read.
    #[error("policy rule file {name} could not be evaluated: {reason}")]
    Evaluation { name: String, reason: String },
}

/// Checks `template` against `rules`, after resolving references to its
/// parameters with `parameters` (or each parameter's `Default`).
///
/// Every rule file is parsed before any is run, so a broken operator file is
/// reported as [`PolicyError::Rule`] whatever the template holds.
pub fn check(
    template: &str,
    parameters: &BTreeMap<String, String>,
    rules: &[RuleFile],
) -> Result<Report, PolicyError> {
    let mut with_rules = Vec::with_capacity(rules.len());
    for rule in rules {
        if guard::parse(rule)? {
            with_rules.push(rule);
        }
    }
    let data = template::resolved_json(template, parameters)?;

    let mut report = Report::default();
    for rule in with_rules {
        let findings = guard::evaluate(rule, &data)?;
        match rule.severity {
            Severity::Fail => report.failures.extend(findings),
            Severity::Warn => report.warnings.extend(findings),
        }
    }
    for findings in [&mut report.failures, &mut report.warnings] {
        findings.sort();
        findings.dedup();
    }
    Ok(report)
}
