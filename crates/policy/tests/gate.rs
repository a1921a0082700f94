//! The policy gate on whole templates, through the public API only.

use std::collections::BTreeMap;
use std::time::Instant;

use policy::{
    check, default_rules, merge, rule_file, Finding, PolicyError, Report, RuleFile, Severity,
};
use serde_json::{json, Value};

fn no_parameters() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn check_defaults(template: &Value) -> Report {
    check(&template.to_string(), &no_parameters(), &default_rules()).unwrap()
}

/// (rule, resource, severity) of each finding, for asserting on what was
/// found without repeating the messages.
fn found(findings: &[Finding]) -> Vec<(&str, &str, Severity)> {
    findings
        .iter()
        .map(|f| (f.rule.as_str(), f.resource.as_str(), f.severity))
        .collect()
}

fn role_with_statement(statement: Value) -> Value {
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
            },
            "Policies": [{"PolicyName": "deploy", "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]}}]
        }
    })
}

fn template(resources: Value) -> Value {
    json!({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources})
}

fn closed_bucket() -> Value {
    json!({
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true}
        }
    })
}

#[test]
fn a_role_allowing_every_action_on_every_resource_fails_on_that_role() {
    let report = check_defaults(&template(json!({
        "DeployRole": role_with_statement(json!({"Effect": "Allow", "Action": "*", "Resource": "*"})),
    })));

    assert_eq!(
        found(&report.failures),
        [(
            "iam_no_wildcard_action_resource",
            "DeployRole",
            Severity::Fail
        )]
    );
    assert!(report.failures[0].message.contains("every action"));
    assert!(report.warnings.is_empty());
    assert!(!report.passed());
}

#[test]
fn the_same_role_with_a_scoped_action_passes() {
    let report = check_defaults(&template(json!({
        "DeployRole": role_with_statement(json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"})),
    })));

    assert_eq!(report, Report::default());
    assert!(report.passed());
}

#[test]
fn wildcards_in_lists_lone_statements_and_managed_policies_are_found() {
    let report = check_defaults(&template(json!({
        "ListRole": role_with_statement(json!({"Effect": "Allow", "Action": ["s3:GetObject", "*"], "Resource": ["*"]})),
        "LonePolicy": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyName": "p", "Roles": ["r"],
            "PolicyDocument": {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}}},
        "Managed": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}},
        "DenyAll": role_with_statement(json!({"Effect": "Deny", "Action": "*", "Resource": "*"})),
        "OneBucket": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]}}]}}},
    })));

    assert_eq!(
        found(&report.failures),
        [
            (
                "iam_no_wildcard_action_resource",
                "ListRole",
                Severity::Fail
            ),
            (
                "iam_no_wildcard_action_resource",
                "LonePolicy",
                Severity::Fail
            ),
            ("iam_no_wildcard_action_resource", "Managed", Severity::Fail),
        ]
    );
}

#[test]
fn an_action_given_by_a_parameter_is_checked_by_its_value() {
    let template = json!({
        "Parameters": {"Actions": {"Type": "String", "Default": "*"}},
        "Resources": {
            "DeployRole": role_with_statement(json!({"Effect": "Allow", "Action": {"Ref": "Actions"}, "Resource": "*"})),
        }
    })
    .to_string();
    let with = |value: &str| BTreeMap::from([("Actions".to_string(), value.to_string())]);

    let wildcard = check(&template, &with("*"), &default_rules()).unwrap();
    assert_eq!(
        found(&wildcard.failures),
        [(
            "iam_no_wildcard_action_resource",
            "DeployRole",
            Severity::Fail
        )]
    );

    let scoped = check(&template, &with("s3:GetObject"), &default_rules()).unwrap();
    assert!(scoped.passed(), "{:?}", scoped.failures);

    // Not supplied: the parameter's Default ("*") is what would deploy.
    let defaulted = check(&template, &no_parameters(), &default_rules()).unwrap();
    assert!(!defaulted.passed());
}

#[test]
fn a_bucket_without_encryption_is_a_warning_not_a_failure() {
    let mut bucket = closed_bucket();
    bucket["Properties"]
        .as_object_mut()
        .unwrap()
        .remove("BucketEncryption");
    let report = check_defaults(&template(json!({ "Artifacts": bucket })));

    assert!(report.passed());
    assert!(report.failures.is_empty());
    assert_eq!(
        found(&report.warnings),
        [("s3_bucket_encryption", "Artifacts", Severity::Warn)]
    );
}

#[test]
fn a_yaml_template_with_short_form_tags_is_parsed_and_checked() {
    let template = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Actions:
    Type: String
Resources:
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/deployer/${AWS::StackName}"
      RetentionInDays: 30
  DeployRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub "${AWS::StackName}-deploy"
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole
      Policies:
        - PolicyName: deploy
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: !Ref Actions
                Resource: "*"
              - Effect: Allow
                Action: "*"
                Resource: !GetAtt Logs.Arn
"#;
    let parameters = BTreeMap::from([("Actions".to_string(), "*".to_string())]);

    let report = check(template, &parameters, &default_rules()).unwrap();

    // The first statement (the parameter's "*") fails; the second, scoped to
    // one log group by !GetAtt, does not.
    assert_eq!(
        found(&report.failures),
        [(
            "iam_no_wildcard_action_resource",
            "DeployRole",
            Severity::Fail
        )]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn public_buckets_fail_on_each_flag_left_open() {
    let mut half_open = closed_bucket();
    half_open["Properties"]["PublicAccessBlockConfiguration"] =
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": "true", "IgnorePublicAcls": false});
    let report = check_defaults(&template(json!({
        "Bare": {"Type": "AWS::S3::Bucket"},
        "HalfOpen": half_open,
        "Closed": closed_bucket(),
    })));

    let messages: Vec<(&str, &str)> = report
        .failures
        .iter()
        .map(|f| (f.resource.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].0 == "Bare" && messages[0].1.contains("no PublicAccessBlockConfiguration"));
    assert!(messages[1].0 == "HalfOpen" && messages[1].1.contains("IgnorePublicAcls to true"));
    assert!(messages[2].0 == "HalfOpen" && messages[2].1.contains("RestrictPublicBuckets to true"));
    assert!(report
        .failures
        .iter()
        .all(|f| f.rule == "s3_bucket_public_access_blocked"));
    assert_eq!(
        found(&report.warnings),
        [("s3_bucket_encryption", "Bare", Severity::Warn)]
    );
}

#[test]
fn admin_ports_open_to_the_internet_fail() {
    let group = |ingress: Value| json!({"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g", "SecurityGroupIngress": [ingress]}});
    let report = check_defaults(&template(json!({
        "Ssh": group(json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"})),
        "Range": group(json!({"IpProtocol": "tcp", "FromPort": "0", "ToPort": "1024", "CidrIp": "0.0.0.0/0"})),
        "RdpV6": group(json!({"IpProtocol": "6", "FromPort": 3389, "ToPort": 3389, "CidrIpv6": "::/0"})),
        "Everything": group(json!({"IpProtocol": -1, "CidrIp": "0.0.0.0/0"})),
        "Standalone": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": "sg-1", "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"}},
        "Https": group(json!({"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"})),
        "PrivateSsh": group(json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "10.0.0.0/8"})),
        "Udp": group(json!({"IpProtocol": "udp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"})),
        "NoIngress": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g"}},
        // Guard cannot read a port chosen by Fn::If: not checked, and not
        // reported as a failure on no resource either.
        "Conditional": group(json!({"IpProtocol": "tcp", "CidrIp": "0.0.0.0/0",
            "FromPort": {"Fn::If": ["Public", 443, 8443]}, "ToPort": {"Fn::If": ["Public", 443, 8443]}})),
    })));

    let failed: Vec<(&str, &str)> = report
        .failures
        .iter()
        .map(|f| (f.resource.as_str(), f.message.split(';').next().unwrap()))
        .collect();
    assert_eq!(
        failed,
        [
            ("Everything", "an ingress rule opens every protocol and port (IpProtocol -1) to the internet (0.0.0.0/0 or ::/0)"),
            ("Range", "an ingress rule opens SSH (port 22) to the internet (0.0.0.0/0 or ::/0)"),
            ("RdpV6", "an ingress rule opens RDP (port 3389) to the internet (0.0.0.0/0 or ::/0)"),
            ("Ssh", "an ingress rule opens SSH (port 22) to the internet (0.0.0.0/0 or ::/0)"),
            ("Standalone", "an ingress rule opens SSH (port 22) to the internet (0.0.0.0/0 or ::/0)"),
        ]
    );
    assert!(report
        .failures
        .iter()
        .all(|f| f.rule == "security_group_no_open_admin_ports"));
}

#[test]
fn a_log_group_without_retention_is_a_warning() {
    let report = check_defaults(&template(json!({
        "Forever": {"Type": "AWS::Logs::LogGroup"},
        "Month": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
    })));

    assert!(report.passed());
    assert_eq!(
        found(&report.warnings),
        [("log_group_retention", "Forever", Severity::Warn)]
    );
}

#[test]
fn an_operator_file_replaces_the_default_of_the_same_name() {
    let bucket_without_encryption = template(json!({"Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true}
    }}}))
    .to_string();

    // Relaxed: a file with only a comment turns the warning off.
    let relaxed = merge(
        default_rules(),
        vec![rule_file(
            "s3_bucket_encryption.guard",
            "# S3 encrypts with SSE-S3 by default; we do not ask for more.\n".to_string(),
        )],
    );
    let report = check(&bucket_without_encryption, &no_parameters(), &relaxed).unwrap();
    assert_eq!(report, Report::default());

    // Tightened: the default's own text under a failure's name.
    let default_text = default_rules()
        .into_iter()
        .find(|r| r.name == "s3_bucket_encryption")
        .unwrap()
        .text;
    let tightened = merge(
        default_rules(),
        vec![rule_file("s3_bucket_encryption.guard", default_text)],
    );
    let report = check(&bucket_without_encryption, &no_parameters(), &tightened).unwrap();
    assert_eq!(
        found(&report.failures),
        [("s3_bucket_encryption", "Artifacts", Severity::Fail)]
    );
    assert!(report.warnings.is_empty());
}

#[test]
fn an_operator_rule_adds_a_failure_named_after_its_rule() {
    let require_owner_tag = rule_file(
        "_deployer/policy/prd/require_owner_tag.guard",
        r#"
let buckets = Resources.*[ Type == 'AWS::S3::Bucket' ]
rule buckets_have_an_owner when %buckets !empty {
    %buckets.Properties.Tags[ Key == 'Owner' ] !empty
    << every bucket needs an Owner tag >>
}
"#
        .to_string(),
    );
    let rules = merge(default_rules(), vec![require_owner_tag]);
    let mut tagged = closed_bucket();
    tagged["Properties"]["Tags"] = json!([{"Key": "Owner", "Value": "platform"}]);

    let report = check(
        &template(json!({"Untagged": closed_bucket(), "Tagged": tagged})).to_string(),
        &no_parameters(),
        &rules,
    )
    .unwrap();

    assert_eq!(
        report.failures,
        [Finding {
            rule: "buckets_have_an_owner".to_string(),
            resource: "Untagged".to_string(),
            message: "every bucket needs an Owner tag".to_string(),
            severity: Severity::Fail,
        }]
    );
    assert_eq!(
        report.failures[0].describe(),
        "rule buckets_have_an_owner: resource Untagged: every bucket needs an Owner tag"
    );
}

#[test]
fn clauses_outside_a_rule_block_are_reported_under_the_file_name() {
    let no_log_groups = rule_file(
        "no_log_groups.guard",
        "Resources.*.Type != 'AWS::Logs::LogGroup'".to_string(),
    );

    let report = check(
        &template(json!({"Logs": {"Type": "AWS::Logs::LogGroup"}})).to_string(),
        &no_parameters(),
        &[no_log_groups],
    )
    .unwrap();

    assert_eq!(
        found(&report.failures),
        [("no_log_groups", "Logs", Severity::Fail)]
    );
    // No rule message: Guard's own description, without positions in the
    // JSON this crate handed it.
    assert!(
        report.failures[0]
            .message
            .starts_with("Check was not compliant")
            && !report.failures[0].message.contains("[L:"),
        "{}",
        report.failures[0].message
    );
}

#[test]
fn a_malformed_operator_rule_is_an_error_naming_its_file() {
    let rules = merge(
        default_rules(),
        vec![rule_file(
            "require_tags.warn.guard",
            "rule require_tags { Resources.*.Properties.Tags exists <<unterminated".to_string(),
        )],
    );

    let error = check(&template(json!({})).to_string(), &no_parameters(), &rules).unwrap_err();

    assert!(
        matches!(&error, PolicyError::Rule { name, .. } if name == "require_tags.warn.guard"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("require_tags.warn.guard"),
        "{error}"
    );
}

#[test]
fn a_value_a_rule_cannot_read_fails_on_its_resource() {
    // parse_int cannot read "ssh": Guard fails the clause, and names the
    // value's path in its description only.
    let template = template(
        json!({"Ssh": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
        "GroupDescription": "g",
        "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": "ssh", "ToPort": 22, "CidrIp": "0.0.0.0/0"}]}}}),
    );

    let report = check(&template.to_string(), &no_parameters(), &default_rules()).unwrap();

    assert_eq!(
        found(&report.failures),
        [("security_group_no_open_admin_ports", "Ssh", Severity::Fail)]
    );
}

#[test]
fn a_malformed_template_is_a_template_error() {
    for text in [
        r#"{"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}"#,
        "Resources:\n  Bucket:\n    Type: [AWS::S3::Bucket\n",
        "Description: no resources here\n",
    ] {
        let error = check(text, &no_parameters(), &default_rules()).unwrap_err();
        assert!(
            matches!(error, PolicyError::Template { .. }),
            "{text:?}: {error:?}"
        );
    }
}

#[test]
fn identical_findings_are_reported_once() {
    let iam = default_rules()
        .into_iter()
        .find(|r| r.name == "iam_no_wildcard_action_resource")
        .unwrap();
    // The same rule under a second file name finds the same thing again.
    let copy = rule_file("copy_of_iam.guard", iam.text.clone());
    // Two wildcard statements in one role are one finding on that role.
    let mut role = role_with_statement(json!({"Effect": "Allow", "Action": "*", "Resource": "*"}));
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}));

    let report = check(
        &template(json!({ "DeployRole": role })).to_string(),
        &no_parameters(),
        &[iam, copy],
    )
    .unwrap();

    assert_eq!(report.failures.len(), 1, "{:#?}", report.failures);
}

#[test]
fn findings_come_out_in_the_same_order_every_run() {
    let resources = json!({
        "Zeta": role_with_statement(json!({"Effect": "Allow", "Action": "*", "Resource": "*"})),
        "Alpha": {"Type": "AWS::S3::Bucket"},
        "Mid": {"Type": "AWS::Logs::LogGroup"},
        "Beta": role_with_statement(json!({"Effect": "Allow", "Action": "*", "Resource": "*"})),
    });
    let text = template(resources).to_string();
    let mut reversed = default_rules();
    reversed.reverse();

    let first = check(&text, &no_parameters(), &default_rules()).unwrap();
    let second = check(&text, &no_parameters(), &reversed).unwrap();

    assert_eq!(first, second);
    for findings in [&first.failures, &first.warnings] {
        let mut sorted = findings.clone();
        sorted.sort();
        assert_eq!(findings, &sorted);
    }
    assert_eq!(
        found(&first.failures),
        [
            ("iam_no_wildcard_action_resource", "Beta", Severity::Fail),
            ("iam_no_wildcard_action_resource", "Zeta", Severity::Fail),
            ("s3_bucket_public_access_blocked", "Alpha", Severity::Fail),
        ]
    );
}

#[test]
fn rule_file_names_give_the_name_and_the_severity() {
    let warn = rule_file(
        "_deployer/policy/prd/log_group_retention.warn.guard",
        String::new(),
    );
    assert_eq!(
        (warn.name.as_str(), warn.severity),
        ("log_group_retention", Severity::Warn)
    );
    assert_eq!(warn.file_name(), "log_group_retention.warn.guard");

    let fail = rule_file("require_tags.guard", String::new());
    assert_eq!(
        (fail.name.as_str(), fail.severity),
        ("require_tags", Severity::Fail)
    );
    assert_eq!(fail.file_name(), "require_tags.guard");

    assert_eq!(
        serde_json::to_value([Severity::Fail, Severity::Warn]).unwrap(),
        json!(["FAIL", "WARN"])
    );
}

#[test]
fn merge_replaces_defaults_by_name_and_sorts() {
    let operator = vec![
        rule_file("zz_extra.guard", "# z".to_string()),
        rule_file("log_group_retention.guard", "# stricter".to_string()),
        rule_file("aa_extra.warn.guard", "# a".to_string()),
    ];

    let merged = merge(default_rules(), operator);

    let names: Vec<(&str, Severity)> = merged
        .iter()
        .map(|r| (r.name.as_str(), r.severity))
        .collect();
    assert_eq!(
        names,
        [
            ("aa_extra", Severity::Warn),
            ("iam_no_wildcard_action_resource", Severity::Fail),
            ("log_group_retention", Severity::Fail),
            ("s3_bucket_encryption", Severity::Warn),
            ("s3_bucket_public_access_blocked", Severity::Fail),
            ("security_group_no_open_admin_ports", Severity::Fail),
            ("zz_extra", Severity::Fail),
        ]
    );
    let replaced: &RuleFile = &merged[2];
    assert_eq!(replaced.text, "# stricter");
}

/// Not a benchmark: prints how long one check takes, for docs/policy.md.
/// Run with `cargo test -p policy --release -- --nocapture timing`.
#[test]
fn timing_of_one_check_of_a_thirty_resource_template() {
    let mut resources = serde_json::Map::new();
    for i in 0..6 {
        resources.insert(format!("Bucket{i}"), closed_bucket());
        resources.insert(
            format!("Role{i}"),
            role_with_statement(
                json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}),
            ),
        );
        resources.insert(
            format!("Logs{i}"),
            json!({"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}}),
        );
        resources.insert(
            format!("Group{i}"),
            json!({"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "g",
                "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"}]}}),
        );
        resources.insert(
            format!("Function{i}"),
            json!({"Type": "AWS::Lambda::Function", "Properties": {"Runtime": "provided.al2023", "Handler": "bootstrap",
                "Role": {"Fn::GetAtt": [format!("Role{i}"), "Arn"]}, "Code": {"S3Bucket": "b", "S3Key": "k"}}}),
        );
    }
    let text = template(Value::Object(resources)).to_string();
    let rules = default_rules();

    check(&text, &no_parameters(), &rules).unwrap();
    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        let report = check(&text, &no_parameters(), &rules).unwrap();
        assert_eq!(report, Report::default());
    }
    println!(
        "one check of a 30-resource template with the {} default rules: {:.2?}",
        rules.len(),
        start.elapsed() / runs
    );
}
