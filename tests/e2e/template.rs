//! Properties of `cloudformation.template` every change must keep.

use serde_json::{json, Value};

fn template() -> Value {
    let text =
        std::fs::read_to_string(deployer_e2e::root().join("cloudformation.template")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn resources(doc: &Value, kind: &str) -> Vec<(String, Value)> {
    doc["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect()
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(branches).collect(),
        Value::Null => Vec::new(),
        other => branches(other),
    }
}

/// What a value can be once conditions are resolved: both branches of an
/// `Fn::If` (flattened, `AWS::NoValue` dropped), else the value itself.
fn branches(value: &Value) -> Vec<Value> {
    if let Some(choice) = value.get("Fn::If").and_then(Value::as_array) {
        return choice[1..]
            .iter()
            .flat_map(|branch| match branch {
                Value::Array(items) => items.iter().flat_map(branches).collect(),
                other => branches(other),
            })
            .collect();
    }
    if value == &json!({"Ref": "AWS::NoValue"}) {
        return Vec::new();
    }
    vec![value.clone()]
}

/// The alarms watching `metric` of `dimension` = `subject`.
fn alarms_on(doc: &Value, metric: &str, dimension: &str, subject: &Value) -> Vec<(String, Value)> {
    resources(doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, alarm)| {
            let props = &alarm["Properties"];
            props["MetricName"] == metric
                && as_list(&props["Dimensions"])
                    .iter()
                    .any(|d| d["Name"] == dimension && &d["Value"] == subject)
        })
        .collect()
}

/// Asserts `subject` (a resource id) has an alarm on `metric` that exists
/// exactly when the subject does.
fn assert_alarmed(doc: &Value, subject: &str, metric: &str, dimension: &str, value: Value) {
    let alarms = alarms_on(doc, metric, dimension, &value);
    assert!(!alarms.is_empty(), "{subject} has no {metric} alarm");
    for (id, alarm) in alarms {
        assert_eq!(
            alarm["Condition"], doc["Resources"][subject]["Condition"],
            "{id} must exist exactly when {subject} does"
        );
    }
}

#[test]
fn no_role_grants_every_action_on_every_resource() {
    let doc = template();
    for (id, role) in resources(&doc, "AWS::IAM::Role") {
        for policy in as_list(&role["Properties"]["Policies"]) {
            for statement in as_list(&policy["PolicyDocument"]["Statement"]) {
                let actions = as_list(&statement["Action"]);
                let targets = as_list(&statement["Resource"]);
                let any_action = actions
                    .iter()
                    .any(|a| a == "*" || a.as_str().is_some_and(|a| a.ends_with(":*")));
                let any_resource = targets.iter().any(|r| r == "*");
                assert!(
                    !(any_action && any_resource),
                    "{id} allows {actions:?} on *"
                );
            }
        }
        assert!(
            role["Properties"]["ManagedPolicyArns"].is_null(),
            "{id} uses managed policies; write what it needs"
        );
    }
}

#[test]
fn every_function_logs_to_a_group_with_retention() {
    let doc = template();
    let functions = resources(&doc, "AWS::Lambda::Function");
    assert!(functions.len() >= 4);
    for (id, function) in functions {
        let group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no LoggingConfig.LogGroup"));
        let retention = &doc["Resources"][group]["Properties"]["RetentionInDays"];
        assert!(
            !retention.is_null(),
            "{id}'s log group {group} keeps logs forever"
        );
        assert_eq!(
            doc["Resources"][group]["Condition"], function["Condition"],
            "{id} and its log group {group} exist together"
        );
        assert_eq!(
            function["Properties"]["LoggingConfig"]["LogFormat"], "JSON",
            "{id}"
        );
    }
}

#[test]
fn every_stream_mapping_reports_failures_and_has_an_on_failure_destination() {
    let doc = template();
    let mappings = resources(&doc, "AWS::Lambda::EventSourceMapping");
    assert!(!mappings.is_empty());
    for (id, mapping) in mappings {
        let props = &mapping["Properties"];
        assert!(
            !props["DestinationConfig"]["OnFailure"]["Destination"].is_null(),
            "{id} drops failed batches"
        );
        assert_eq!(
            props["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "{id}"
        );
        assert_eq!(props["BisectBatchOnFunctionError"], true, "{id}");
        assert!(
            props["MaximumRetryAttempts"]
                .as_u64()
                .is_some_and(|n| n <= 10),
            "{id}: bounded retries"
        );
        assert!(
            props["MaximumRecordAgeInSeconds"].as_u64().is_some(),
            "{id}: bounded record age"
        );
    }
}

#[test]
fn runtime_defaults_to_al2023_and_arm64_and_offers_the_alternatives() {
    let doc = template();
    let runtime = &doc["Parameters"]["Runtime"];
    assert_eq!(runtime["Default"], "provided.al2023");
    assert_eq!(
        runtime["AllowedValues"],
        serde_json::json!(["provided.al2023", "provided.al2"])
    );
    let arch = &doc["Parameters"]["Architecture"];
    assert_eq!(arch["Default"], "arm64");
    assert_eq!(
        arch["AllowedValues"],
        serde_json::json!(["arm64", "x86_64"])
    );
}

#[test]
fn every_alarm_notifies_the_alarm_topic() {
    let doc = template();
    let alarms = resources(&doc, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty());
    for (id, alarm) in alarms {
        let props = &alarm["Properties"];
        assert!(
            as_list(&props["AlarmActions"]).contains(&json!({"Ref": "AlarmTopic"})),
            "{id} notifies no one"
        );
        assert!(
            as_list(&props["OKActions"]).contains(&json!({"Ref": "AlarmTopic"})),
            "{id} never says it recovered"
        );
        assert_eq!(props["TreatMissingData"], "notBreaching", "{id}");
    }
    let topic = &doc["Resources"]["AlarmTopic"];
    assert_eq!(topic["Type"], "AWS::SNS::Topic");
    assert_ne!(
        topic["Properties"]["KmsMasterKeyId"], "alias/aws/sns",
        "CloudWatch cannot publish to a topic under the AWS managed SNS key"
    );
}

#[test]
fn every_function_queue_stream_and_state_machine_is_alarmed() {
    let doc = template();
    for (id, _) in resources(&doc, "AWS::Lambda::Function") {
        assert_alarmed(&doc, &id, "Errors", "FunctionName", json!({"Ref": id}));
    }
    for (id, mapping) in resources(&doc, "AWS::Lambda::EventSourceMapping") {
        let function = mapping["Properties"]["FunctionName"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} names its function by Ref"))
            .to_owned();
        assert_alarmed(
            &doc,
            &function,
            "IteratorAge",
            "FunctionName",
            json!({"Ref": function}),
        );
    }
    for (id, _) in resources(&doc, "AWS::SQS::Queue") {
        assert_alarmed(
            &doc,
            &id,
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            json!({"Fn::GetAtt": [id, "QueueName"]}),
        );
    }
    for (id, _) in resources(&doc, "AWS::StepFunctions::StateMachine") {
        for metric in ["ExecutionsFailed", "ExecutionsTimedOut"] {
            assert_alarmed(&doc, &id, metric, "StateMachineArn", json!({"Ref": id}));
        }
    }
}

/// `FUNCTIONS` as the Makefile and scripts/deploy.py spell it.
fn packaged_functions() -> (Vec<String>, Vec<String>) {
    let root = deployer_e2e::root();
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let make: Vec<String> = makefile
        .lines()
        .find_map(|line| line.strip_prefix("FUNCTIONS := "))
        .expect("Makefile sets FUNCTIONS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let script = std::fs::read_to_string(root.join("scripts/deploy.py")).unwrap();
    let tuple = script
        .lines()
        .find_map(|line| line.strip_prefix("FUNCTIONS = ("))
        .expect("deploy.py sets FUNCTIONS");
    let deploy: Vec<String> = tuple
        .trim_end_matches(')')
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    (make, deploy)
}

#[test]
fn every_function_runs_a_zip_that_make_package_builds_and_make_deploy_uploads() {
    let doc = template();
    let mut zips: Vec<String> = resources(&doc, "AWS::Lambda::Function")
        .into_iter()
        .map(|(id, function)| {
            let key = function["Properties"]["Code"]["S3Key"]["Fn::Sub"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}'s code key is a Fn::Sub"))
                .to_owned();
            key.strip_prefix("${CodePrefix}")
                .and_then(|k| k.strip_suffix(".zip"))
                .unwrap_or_else(|| panic!("{id}: code key {key} is not ${{CodePrefix}}NAME.zip"))
                .to_owned()
        })
        .collect();
    zips.sort();
    let (mut make, mut deploy) = packaged_functions();
    make.sort();
    deploy.sort();
    assert_eq!(make, zips, "Makefile FUNCTIONS");
    assert_eq!(deploy, zips, "scripts/deploy.py FUNCTIONS");
}

/// The variables of the `n`th configuration table in docs/site-build.md
/// (1: site-build's, 2: the builder's).
fn documented_variables(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(deployer_e2e::root().join("docs/site-build.md")).unwrap();
    let section = text
        .split("\n## Configuration")
        .nth(n)
        .expect("docs/site-build.md has a Configuration section");
    let table = section.split("\n## ").next().unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|row| row.split(" |").next().unwrap_or_default())
        .flat_map(|cell| {
            cell.split('`')
                .map(str::trim)
                .filter(|name| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn site_build_gets_every_documented_variable_and_exists_only_with_a_site() {
    let doc = template();
    let function = &doc["Resources"]["SiteBuildFunction"];
    let vars = function["Properties"]["Environment"]["Variables"]
        .as_object()
        .expect("SiteBuildFunction has environment variables");
    let documented = documented_variables(1);
    assert!(documented.len() >= 20, "{documented:?}");
    for name in &documented {
        assert!(vars.contains_key(name), "SiteBuildFunction lacks {name}");
    }
    for name in vars.keys() {
        assert!(
            documented.contains(name),
            "{name} is not in docs/site-build.md"
        );
    }
    let props = &function["Properties"];
    assert_eq!(props["Timeout"], 900);
    assert_eq!(props["EphemeralStorage"]["Size"], 4096);
    // Everything of site-build is created only with a site; nothing else depends on it.
    for (id, resource) in doc["Resources"].as_object().unwrap() {
        let site = id.starts_with("Site");
        let condition = resource["Condition"].as_str();
        assert_eq!(
            site,
            matches!(condition, Some("HasSite" | "HasInbound")),
            "{id}: Condition {condition:?}"
        );
    }
}

#[test]
fn the_site_builder_gets_its_documented_variables_and_a_role_that_allows_nothing_else() {
    let doc = template();
    let builder = &doc["Resources"]["SiteBuilderFunction"]["Properties"];
    let vars = builder["Environment"]["Variables"].as_object().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut documented = documented_variables(2);
    documented.sort();
    assert_eq!(names, documented.iter().collect::<Vec<_>>());
    assert_eq!(vars["BUILD_SANDBOX_USER"], "dedicated");
    assert_eq!(
        builder["Role"],
        json!({"Fn::GetAtt": ["SiteBuilderRole", "Arn"]})
    );
    // Its role: writing its own log group, nothing else, no managed policy.
    let role = &doc["Resources"]["SiteBuilderRole"]["Properties"];
    assert!(role.get("ManagedPolicyArns").is_none(), "{role}");
    let policies = role["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{role}");
    assert_eq!(
        policies[0]["PolicyDocument"]["Statement"],
        json!([{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": ["SiteBuilderLogGroup", "Arn"]}
        }])
    );
    // site-build no longer runs npm: the layer and npm are the builder's.
    let site_build = &doc["Resources"]["SiteBuildFunction"]["Properties"];
    assert!(site_build.get("Layers").is_none());
    assert!(builder.get("Layers").is_some());
    assert_eq!(
        site_build["Environment"]["Variables"]["BUILDER_FUNCTION"],
        json!({"Ref": "SiteBuilderFunction"})
    );
    // Handoff objects expire even when site-build dies before deleting them.
    let rules = doc["Resources"]["SiteBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["Prefix"] == "builds/" && r["ExpirationInDays"] == 1),
        "{rules:?}"
    );
}

#[test]
fn the_site_bucket_is_read_only_by_the_distribution_and_written_only_by_ses() {
    let doc = template();
    let bucket = &doc["Resources"]["SiteBucket"]["Properties"];
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"],
        json!({
            "BlockPublicAcls": true,
            "BlockPublicPolicy": true,
            "IgnorePublicAcls": true,
            "RestrictPublicBuckets": true
        })
    );
    assert!(!bucket["BucketEncryption"].is_null());
    let policy = &doc["Resources"]["SiteBucketPolicy"]["Properties"]["PolicyDocument"];
    let statements = as_list(&policy["Statement"]);
    assert!(
        statements
            .iter()
            .any(|s| s["Effect"] == "Deny"
                && s["Condition"]["Bool"]["aws:SecureTransport"] == "false")
    );
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        let service = statement["Principal"]["Service"]
            .as_str()
            .unwrap_or_default();
        let resource = statement["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap_or_default();
        match service {
            "cloudfront.amazonaws.com" => {
                assert_eq!(statement["Action"], "s3:GetObject");
                assert!(resource.ends_with("/deploys/*"), "{resource}");
                assert!(!statement["Condition"]["StringEquals"]["AWS:SourceArn"].is_null());
            }
            "ses.amazonaws.com" => {
                assert_eq!(statement["Action"], "s3:PutObject");
                assert!(resource.ends_with("/inbound/*"), "{resource}");
                assert!(!statement["Condition"]["StringEquals"]["aws:SourceAccount"].is_null());
            }
            other => panic!("the site bucket policy admits {other:?}"),
        }
    }
}

#[test]
fn the_only_public_invocation_is_through_the_function_url() {
    let doc = template();
    for (id, permission) in resources(&doc, "AWS::Lambda::Permission") {
        let props = &permission["Properties"];
        if props["Principal"] != "*" {
            continue;
        }
        match props["Action"].as_str() {
            Some("lambda:InvokeFunctionUrl") => {
                assert_eq!(props["FunctionUrlAuthType"], "NONE", "{id}")
            }
            Some("lambda:InvokeFunction") => {
                assert_eq!(props["InvokedViaFunctionUrl"], true, "{id}")
            }
            other => panic!("{id} grants {other:?} to everyone"),
        }
    }
}

/// ci-dispatch's statements allowing `action`, conditions resolved.
fn ci_dispatch_statements(doc: &Value, action: &str) -> Vec<Value> {
    as_list(&doc["Resources"]["CiDispatchRole"]["Properties"]["Policies"])
        .iter()
        .flat_map(|policy| as_list(&policy["PolicyDocument"]["Statement"]))
        .filter(|statement| as_list(&statement["Action"]).iter().any(|a| a == action))
        .collect()
}

/// The `Fn::Sub` strings (or `Ref`s, as `${Name}`) a Resource can be.
fn resource_patterns(statement: &Value) -> Vec<String> {
    as_list(&statement["Resource"])
        .iter()
        .map(
            |r| match (r["Fn::Sub"].as_str(), r["Ref"].as_str(), r.as_str()) {
                (Some(sub), _, _) => sub.to_owned(),
                (_, Some(name), _) => format!("${{{name}}}"),
                (_, _, Some(literal)) => literal.to_owned(),
                _ => panic!("unexpected resource {r}"),
            },
        )
        .collect()
}

#[test]
fn ci_dispatch_updates_only_the_projects_cluster_and_passes_only_the_projects_task_roles() {
    let doc = template();
    for action in ["ecs:UpdateService", "ecs:DescribeServices"] {
        let statements = ci_dispatch_statements(&doc, action);
        assert!(!statements.is_empty(), "{action} not granted");
        for statement in statements {
            let patterns = resource_patterns(&statement);
            assert_eq!(
                patterns,
                [
                    "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/${ClusterName}/*",
                    "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/${ProjectName}_cluster_${Environment}/*",
                ],
                "{action}: the ClusterName parameter, else the default ClusterPattern's cluster"
            );
        }
    }
    // A custom ClusterPattern cannot leave the policy on the default cluster.
    let rule = &doc["Rules"]["CustomClusterPatternNeedsClusterName"];
    assert_eq!(
        rule["RuleCondition"]["Fn::Not"][0]["Fn::Equals"],
        json!([{"Ref": "ClusterPattern"}, doc["Parameters"]["ClusterPattern"]["Default"]])
    );
    assert_eq!(
        rule["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::Equals"][0],
        json!({"Ref": "ClusterName"})
    );

    let pass_role = ci_dispatch_statements(&doc, "iam:PassRole");
    assert_eq!(pass_role.len(), 1);
    assert_eq!(
        resource_patterns(&pass_role[0]),
        [
            "${TaskRoleArnPattern}",
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ProjectName}_*",
        ]
    );
    assert_eq!(
        pass_role[0]["Condition"]["StringEquals"]["iam:PassedToService"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(doc["Parameters"]["TaskRoleArnPattern"]["Default"], "");
}

#[test]
fn ci_dispatch_reads_only_its_slack_webhook_parameter() {
    let doc = template();
    let statements = ci_dispatch_statements(&doc, "ssm:GetParameters");
    assert_eq!(statements.len(), 1);
    for pattern in resource_patterns(&statements[0]) {
        assert!(
            pattern.ends_with(":parameter/${SlackWebhookParameter}")
                || pattern.ends_with(":parameter${SlackWebhookParameter}"),
            "{pattern}"
        );
    }
    // Without Slack there is no statement at all (an empty Resource is invalid).
    let raw = doc["Resources"]["CiDispatchRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.to_string().contains("ssm:GetParameters"))
        .unwrap();
    assert_eq!(raw["Fn::If"][0], "HasSlack");
}

#[test]
fn the_manual_deploy_rule_matches_only_events_naming_this_environment() {
    let doc = template();
    let pattern = &doc["Resources"]["ManualDeployRule"]["Properties"]["EventPattern"];
    let branches = pattern["$or"]
        .as_array()
        .expect("one branch per way of naming it");
    assert_eq!(pattern.as_object().unwrap().len(), 1, "{pattern}");
    for branch in branches {
        let sources = branch["source"].as_array().unwrap();
        assert_eq!(sources.len(), 1, "{branch}");
        if sources[0] == "action.deploy" {
            assert_eq!(
                branch["detail"]["environment"],
                json!([{"Ref": "Environment"}]),
                "action.deploy must name this environment: {branch}"
            );
        } else {
            assert_eq!(
                sources[0],
                json!({"Fn::Sub": "action.${Environment}"}),
                "{branch}"
            );
        }
    }
    assert_eq!(branches.len(), 2);
}

#[test]
fn every_eventbridge_dead_letter_queue_accepts_its_rules_dead_letters() {
    let doc = template();
    let mut by_queue: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (rule, props) in resources(&doc, "AWS::Events::Rule") {
        for target in as_list(&props["Properties"]["Targets"]) {
            if let Some(queue) = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].as_str() {
                by_queue
                    .entry(queue.to_owned())
                    .or_default()
                    .push(json!({"Fn::GetAtt": [rule, "Arn"]}));
            }
        }
    }
    assert!(!by_queue.is_empty());
    let policies = resources(&doc, "AWS::SQS::QueuePolicy");
    for (queue, mut rules) in by_queue {
        let queue_props = &doc["Resources"][&queue]["Properties"];
        assert!(
            queue_props["KmsMasterKeyId"] != "alias/aws/sqs",
            "{queue}: EventBridge cannot use the AWS managed key alias/aws/sqs"
        );
        let statement = policies
            .iter()
            .filter(|(_, p)| as_list(&p["Properties"]["Queues"]).contains(&json!({"Ref": queue})))
            .flat_map(|(_, p)| as_list(&p["Properties"]["PolicyDocument"]["Statement"]))
            .find(|s| s["Principal"]["Service"] == "events.amazonaws.com")
            .unwrap_or_else(|| panic!("{queue} has no policy letting EventBridge send to it"));
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Action"], "sqs:SendMessage");
        assert_eq!(statement["Resource"], json!({"Fn::GetAtt": [queue, "Arn"]}));
        let mut allowed = as_list(&statement["Condition"]["ArnEquals"]["aws:SourceArn"]);
        let key = |v: &Value| v.to_string();
        allowed.sort_by_key(key);
        rules.sort_by_key(key);
        assert_eq!(allowed, rules, "{queue}: exactly the rules that use it");
    }
}

#[test]
fn a_traced_state_machine_may_write_to_x_ray() {
    let doc = template();
    let machines = resources(&doc, "AWS::StepFunctions::StateMachine");
    assert!(!machines.is_empty());
    for (id, machine) in machines {
        let props = &machine["Properties"];
        if props["TracingConfiguration"]["Enabled"] != true {
            continue;
        }
        let role = props["RoleArn"]["Fn::GetAtt"][0].as_str().unwrap();
        let granted: Vec<Value> = as_list(&doc["Resources"][role]["Properties"]["Policies"])
            .iter()
            .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(|s| as_list(&s["Action"]))
            .collect();
        for action in [
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
        ] {
            assert!(
                granted.contains(&json!(action)),
                "{id} traces but {role} lacks {action}"
            );
        }
    }
}

#[test]
fn the_artifact_bucket_denies_plain_http_and_puts_by_principals_not_named() {
    let doc = template();
    let (id, policy) = resources(&doc, "AWS::S3::BucketPolicy")
        .into_iter()
        .find(|(_, p)| p["Properties"]["Bucket"] == json!({"Ref": "ArtifactBucket"}))
        .expect("the artifact bucket has a policy");
    assert!(
        policy["Condition"].is_null(),
        "{id} exists in every install"
    );
    let bucket = json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}"});
    let objects = json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}/*"});
    let statements = &policy["Properties"]["PolicyDocument"]["Statement"];
    assert_eq!(
        statements[0],
        json!({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        })
    );
    // Only with ArtifactWriterPrincipals: everyone else is denied PutObject.
    assert_eq!(
        statements[1]["Fn::If"],
        json!([
            "HasArtifactWriterPrincipals",
            {
                "Sid": "OnlyArtifactWritersPut",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": {"Fn::Split": [",", {"Ref": "ArtifactWriterPrincipals"}]}}}
            },
            {"Ref": "AWS::NoValue"}
        ])
    );
    // With ArtifactWriterPrincipals, the writers never write the
    // install's own prefix (the operator's policy rules live there).
    assert_eq!(
        statements[2]["Fn::If"][1]["Action"],
        json!(["s3:PutObject", "s3:DeleteObject"])
    );
    assert_eq!(
        statements[2]["Fn::If"][1]["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}/_deployer/*"})
    );
    assert_eq!(
        statements[2]["Fn::If"][1]["Condition"],
        json!({"ArnLike": {"aws:PrincipalArn": {"Fn::Split": [",", {"Ref": "ArtifactWriterPrincipals"}]}}})
    );
    assert_eq!(as_list(statements).len(), 3, "nothing else: {statements}");
    assert_eq!(doc["Parameters"]["ArtifactWriterPrincipals"]["Default"], "");
    assert_eq!(
        doc["Conditions"]["HasArtifactWriterPrincipals"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ArtifactWriterPrincipals"}, ""]}]})
    );
    // The pattern admits a list of ARNs without spaces (Fn::Split keeps them).
    let pattern = doc["Parameters"]["ArtifactWriterPrincipals"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, "^$|^arn:[^,\\s]+(,arn:[^,\\s]+)*$");
}

#[test]
fn site_build_reserved_concurrency_is_an_optional_parameter() {
    let doc = template();
    let parameter = &doc["Parameters"]["SiteBuildReservedConcurrency"];
    assert_eq!(parameter["Default"], "", "unreserved unless asked");
    assert_eq!(parameter["AllowedPattern"], "^$|^[0-9]{1,5}$");
    assert_eq!(
        doc["Conditions"]["HasSiteBuildReservedConcurrency"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "SiteBuildReservedConcurrency"}, ""]}]})
    );
    assert_eq!(
        doc["Resources"]["SiteBuildFunction"]["Properties"]["ReservedConcurrentExecutions"],
        json!({"Fn::If": [
            "HasSiteBuildReservedConcurrency",
            {"Ref": "SiteBuildReservedConcurrency"},
            {"Ref": "AWS::NoValue"}
        ]})
    );
}

#[test]
fn the_install_stack_is_off_limits_to_uploads_and_to_the_state_machine() {
    let doc = template();
    let stack_name = json!({"Ref": "AWS::StackName"});
    // s3-trigger refuses uploads that would deploy it.
    assert_eq!(
        doc["Resources"]["S3TriggerFunction"]["Properties"]["Environment"]["Variables"]
            ["INSTALL_STACK_NAME"],
        stack_name
    );
    // The state machine tags what it creates with the install's name.
    assert_eq!(
        doc["Resources"]["DeploymentStateMachine"]["Properties"]["DefinitionSubstitutions"]
            ["ManagedBy"],
        stack_name
    );
    let asl =
        std::fs::read_to_string(deployer_e2e::root().join("state-machine/deployment.asl.json"))
            .unwrap();
    assert!(asl.contains("\"Value\": \"${ManagedBy}\""));
    // Its role may not change the install's stack even if asked to.
    let denied: Vec<Value> =
        as_list(&doc["Resources"]["StateMachineRole"]["Properties"]["Policies"])
            .iter()
            .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
            .filter(|s| s["Effect"] == "Deny")
            .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        denied[0]["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*"})
    );
    for action in [
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DeleteStack",
    ] {
        assert!(
            as_list(&denied[0]["Action"]).contains(&json!(action)),
            "{action}"
        );
    }
}

/// Actions AWS authorizes only on `*`: the Service Authorization Reference
/// lists no resource type for them, so no ARN can narrow them.
const ONLY_ON_EVERY_RESOURCE: &[(&str, &str)] = &[
    (
        "ecs:DescribeTaskDefinition",
        "no resource type: task definitions are read account-wide",
    ),
    ("ecs:ListTaskDefinitions", "no resource type: a list action"),
    ("xray:PutTraceSegments", "no resource type"),
    ("xray:PutTelemetryRecords", "no resource type"),
    ("xray:GetSamplingRules", "no resource type"),
    ("xray:GetSamplingTargets", "no resource type"),
    // Step Functions' documented policy for logging to CloudWatch Logs: the
    // vended-log delivery actions and the account's log resource policy.
    (
        "logs:CreateLogDelivery",
        "no resource type (vended log delivery)",
    ),
    (
        "logs:GetLogDelivery",
        "no resource type (vended log delivery)",
    ),
    (
        "logs:UpdateLogDelivery",
        "no resource type (vended log delivery)",
    ),
    (
        "logs:DeleteLogDelivery",
        "no resource type (vended log delivery)",
    ),
    (
        "logs:ListLogDeliveries",
        "no resource type (vended log delivery)",
    ),
    (
        "logs:PutResourcePolicy",
        "account-level log resource policy",
    ),
    (
        "logs:DescribeResourcePolicies",
        "account-level log resource policy",
    ),
    ("logs:DescribeLogGroups", "lists the account's log groups"),
];

/// Wildcards for resources whose names this template cannot know.
const UNKNOWN_NAMES: &[(&str, &str, &str)] = &[(
    "ses:SendEmail",
    "configuration-set/*",
    "SES also authorizes the identity's default configuration set, named outside this template; ses:FromAddress still pins the sender",
)];

/// Names a `${...}` in an ARN may use: this template's resources and
/// parameters, the install's stack name, and a `Fn::Sub` variable map.
fn own_names(doc: &Value, local: Option<&Value>) -> Vec<String> {
    let mut names: Vec<String> = ["Resources", "Parameters"]
        .iter()
        .flat_map(|section| doc[*section].as_object().unwrap().keys().cloned())
        .collect();
    names.push("AWS::StackName".to_owned());
    if let Some(map) = local.and_then(Value::as_object) {
        names.extend(map.keys().cloned());
    }
    names
}

/// Why `resource` (one value of a Resource element) is not this install's
/// own, or None when it is.
fn not_own(doc: &Value, action: &str, resource: &Value) -> Option<String> {
    if resource == "*" {
        return (!ONLY_ON_EVERY_RESOURCE.iter().any(|(a, _)| *a == action))
            .then(|| "* although the action takes an ARN".to_owned());
    }
    if let Some(id) = resource["Fn::GetAtt"][0]
        .as_str()
        .or(resource["Ref"].as_str())
    {
        return (!own_names(doc, None).iter().any(|n| n == id))
            .then(|| format!("{id} is not in this template"));
    }
    let (text, local) = match &resource["Fn::Sub"] {
        Value::String(text) => (text.as_str(), None),
        Value::Array(parts) => (parts[0].as_str().unwrap_or_default(), parts.get(1)),
        _ => return Some(format!("unrecognised form {resource}")),
    };
    if UNKNOWN_NAMES
        .iter()
        .any(|(a, suffix, _)| *a == action && text.ends_with(&format!(":{suffix}")))
    {
        return None;
    }
    // arn:partition:service:region:account:resource
    let Some(resource_part) = text.splitn(6, ':').nth(5) else {
        return Some("not an ARN".to_owned());
    };
    let names = own_names(doc, local);
    let first_own = resource_part.match_indices("${").find_map(|(at, _)| {
        let name = &resource_part[at + 2..at + resource_part[at..].find('}')?];
        names.iter().any(|n| n == name).then_some(at)
    });
    let first_wildcard = resource_part.find('*');
    match (first_own, first_wildcard) {
        (None, _) => Some("names nothing of this install".to_owned()),
        (Some(own), Some(star)) if star < own => {
            Some("a wildcard before this install's name".to_owned())
        }
        _ => None,
    }
}

/// (role, action, resource, why) for every Allow that reaches past this
/// install's own resources.
fn foreign_grants(doc: &Value) -> Vec<(String, String, String, String)> {
    let mut offending = Vec::new();
    for (role, props) in resources(doc, "AWS::IAM::Role") {
        for policy in as_list(&props["Properties"]["Policies"]) {
            for statement in as_list(&policy["PolicyDocument"]["Statement"]) {
                if statement["Effect"] != "Allow" {
                    continue;
                }
                for action in as_list(&statement["Action"]) {
                    let action = action.as_str().unwrap_or_default();
                    for resource in as_list(&statement["Resource"]) {
                        if let Some(why) = not_own(doc, action, &resource) {
                            offending.push((
                                role.clone(),
                                action.to_owned(),
                                resource.to_string(),
                                why,
                            ));
                        }
                    }
                }
            }
        }
    }
    offending
}

#[test]
fn every_granted_resource_is_this_installs_own_and_star_only_where_aws_requires_it() {
    let doc = template();
    let offending = foreign_grants(&doc);
    assert!(
        offending.is_empty(),
        "grants beyond this install's resources:\n{}",
        offending
            .iter()
            .map(|(role, action, resource, why)| format!("  {role} {action} {resource}: {why}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The check itself catches what it is for.
    let mut bad = doc.clone();
    bad["Resources"]["S3TriggerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}),
            json!({"Effect": "Allow", "Action": "ses:SendEmail",
                   "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}}),
            json!({"Effect": "Allow", "Action": "ssm:GetParameter",
                   "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*/${Environment}"}}),
            json!({"Effect": "Allow", "Action": "sqs:SendMessage",
                   "Resource": {"Fn::GetAtt": ["SomeoneElsesQueue", "Arn"]}}),
        ]);
    let caught: Vec<(String, String)> = foreign_grants(&bad)
        .into_iter()
        .map(|(role, action, _, why)| (format!("{role} {action}"), why))
        .collect();
    assert_eq!(
        caught,
        [
            (
                "S3TriggerRole s3:GetObject".to_owned(),
                "* although the action takes an ARN".to_owned()
            ),
            (
                "S3TriggerRole ses:SendEmail".to_owned(),
                "names nothing of this install".to_owned()
            ),
            (
                "S3TriggerRole ssm:GetParameter".to_owned(),
                "a wildcard before this install's name".to_owned()
            ),
            (
                "S3TriggerRole sqs:SendMessage".to_owned(),
                "SomeoneElsesQueue is not in this template".to_owned()
            ),
        ]
    );
}

/// Every deployment table is the ledger's record of its kind and has the
/// `ledger` index (install-wide key, then the record's time-ordered `sk`);
/// only ci-dispatch writes redeploy records, and only Put and Update them.
#[test]
fn every_deployment_table_has_the_ledger_index_and_only_ci_dispatch_writes_redeploys() {
    let doc = template();
    for (table, hash) in [
        ("BuildsTable", "env"),
        ("ServiceDeploymentsTable", "env"),
        ("SiteDeploymentsTable", "site"),
    ] {
        let props = &doc["Resources"][table]["Properties"];
        let index = as_list(&props["GlobalSecondaryIndexes"])
            .into_iter()
            .find(|i| i["IndexName"] == "ledger")
            .unwrap_or_else(|| panic!("{table} has no ledger index"));
        let keys: Vec<(&str, &str)> = index["KeySchema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap(),
                    k["KeyType"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(keys, [(hash, "HASH"), ("sk", "RANGE")], "{table}");
        assert!(
            as_list(&props["AttributeDefinitions"])
                .iter()
                .any(|a| a["AttributeName"] == hash && a["AttributeType"] == "S"),
            "{table} defines {hash}"
        );
    }
    let writers: Vec<(String, Vec<Value>)> = resources(&doc, "AWS::IAM::Role")
        .into_iter()
        .filter_map(|(id, role)| {
            let statements: Vec<Value> = as_list(&role["Properties"]["Policies"])
                .iter()
                .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
                .filter(|s| {
                    as_list(&s["Resource"])
                        .iter()
                        .any(|r| r["Fn::GetAtt"][0] == "ServiceDeploymentsTable")
                })
                .collect();
            (!statements.is_empty()).then_some((id, statements))
        })
        .collect();
    assert_eq!(writers.len(), 1, "{writers:?}");
    assert_eq!(writers[0].0, "CiDispatchRole");
    let actions: Vec<Value> = writers[0]
        .1
        .iter()
        .flat_map(|s| as_list(&s["Action"]))
        .collect();
    assert_eq!(
        actions,
        [json!("dynamodb:PutItem"), json!("dynamodb:UpdateItem")]
    );
    assert_eq!(
        doc["Resources"]["CiDispatchFunction"]["Properties"]["Environment"]["Variables"]
            ["SERVICE_DEPLOYMENTS_TABLE"],
        json!({"Ref": "ServiceDeploymentsTable"})
    );
}

// The figures the docs state about the template: how many resources an
// install has with each option, how many alarms, what they cost. Counted
// here from the template, so a resource added without the docs fails.

/// CloudWatch's price of one standard-resolution alarm, in cents a month.
const ALARM_CENTS_A_MONTH: usize = 10;

/// Resource types moto 5.2.5's CloudFormation skips among those made with
/// the default parameters. tests/e2e/stack_deploy.rs holds the same list as
/// `NOT_IN_MOTO` and checks it against moto; keep the two together.
const MOTO_SKIPS: &[&str] = &[
    "AWS::CloudWatch::Alarm",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
];

/// A doc's text with every run of whitespace made one space, so a sentence
/// matches however its lines are wrapped.
fn doc_text(path: &str) -> String {
    let text = std::fs::read_to_string(deployer_e2e::root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The figures where `pattern` has `{}` (digits, with an optional decimal
/// part: `46`, `1.30`), from the first place in `text` where the pattern's
/// words match exactly; `None` when no sentence has that shape.
fn figures_in(text: &str, pattern: &str) -> Option<Vec<String>> {
    let pieces: Vec<&str> = pattern.split("{}").collect();
    'start: for (at, _) in text.match_indices(pieces[0]) {
        let mut rest = &text[at + pieces[0].len()..];
        let mut found = Vec::new();
        for piece in &pieces[1..] {
            let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let mut end = digits(rest);
            if end == 0 {
                continue 'start;
            }
            if rest[end..].starts_with('.') {
                let decimals = digits(&rest[end + 1..]);
                if decimals > 0 {
                    end += 1 + decimals;
                }
            }
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
            if !rest.starts_with(piece) {
                continue 'start;
            }
            rest = &rest[piece.len()..];
        }
        return Some(found);
    }
    None
}

/// Checks each figure `doc` states in the sentence shaped like `pattern`
/// against the template's, adding what disagrees to `problems`.
fn check_figures(
    problems: &mut Vec<String>,
    doc: &str,
    pattern: &str,
    expected: &[(&str, String)],
) {
    let text = doc_text(doc);
    let Some(found) = figures_in(&text, pattern) else {
        problems.push(format!(
            "{doc} no longer has a sentence shaped \"{pattern}\" ({{}} for each figure): \
             put it back, or change this test with it"
        ));
        return;
    };
    assert_eq!(found.len(), expected.len(), "{pattern}");
    for (value, (figure, truth)) in found.iter().zip(expected) {
        if value != truth {
            problems.push(format!(
                "{doc} says {value} for {figure}; the template says {truth} (in \"{pattern}\")"
            ));
        }
    }
}

fn dollars(cents: usize) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[test]
fn the_docs_state_the_templates_resource_alarm_and_cost_figures() {
    let doc = template();
    let mut problems = Vec::new();

    // Every option that adds resources, by the condition they carry.
    // HasInbound is HasSite and a rule set: the mail resources come on top
    // of the site's.
    assert!(
        as_list(&doc["Conditions"]["HasInbound"]["Fn::And"]).contains(&json!({"Condition": "HasSite"})),
        "HasInbound no longer implies HasSite: README's \"with a site and email commands\" would be wrong"
    );
    let (mut unconditional, mut site, mut inbound, mut alarm_email) = (0, 0, 0, 0);
    let (mut alarms, mut site_alarms, mut skipped_by_moto) = (0, 0, 0);
    for (id, resource) in doc["Resources"].as_object().unwrap() {
        let alarm = resource["Type"] == "AWS::CloudWatch::Alarm";
        match resource["Condition"].as_str() {
            None => {
                unconditional += 1;
                alarms += usize::from(alarm);
                if MOTO_SKIPS.iter().any(|t| resource["Type"] == *t) {
                    skipped_by_moto += 1;
                }
            }
            Some("HasSite") => {
                site += 1;
                site_alarms += usize::from(alarm);
            }
            Some("HasInbound") => inbound += 1,
            Some("HasAlarmEmail") => alarm_email += 1,
            Some(other) => problems.push(format!(
                "{id} has the condition {other}, which no resource figure in README.md counts"
            )),
        }
        if alarm && !matches!(resource["Condition"].as_str(), None | Some("HasSite")) {
            problems.push(format!(
                "the alarm {id} is neither unconditional nor HasSite's; README.md's alarm figures do not count it"
            ));
        }
    }
    let with_site = unconditional + site;
    let all_alarms = alarms + site_alarms;

    check_figures(
        &mut problems,
        "README.md",
        "That is {} resources without a site, {} with a site and {} with a site and email commands; `AlarmEmail` adds {}.",
        &[
            ("the resources without a site", unconditional.to_string()),
            ("the resources with a site", with_site.to_string()),
            ("the resources with a site and email commands", (with_site + inbound).to_string()),
            ("what AlarmEmail adds", alarm_email.to_string()),
        ],
    );
    check_figures(
        &mut problems,
        "README.md",
        "optional email subscription, {} CloudWatch alarms ({} with a site;",
        &[
            ("the alarms without a site", alarms.to_string()),
            ("the alarms with a site", all_alarms.to_string()),
        ],
    );
    check_figures(
        &mut problems,
        "README.md",
        &format!(
            "CloudWatch alarms, ${} each a month: {{}} alarms, ${{}} ({{}} with a site, ${{}}).",
            dollars(ALARM_CENTS_A_MONTH)
        ),
        &[
            ("the alarms without a site", alarms.to_string()),
            ("their cost a month", dollars(alarms * ALARM_CENTS_A_MONTH)),
            ("the alarms with a site", all_alarms.to_string()),
            (
                "their cost a month with a site",
                dollars(all_alarms * ALARM_CENTS_A_MONTH),
            ),
        ],
    );
    check_figures(
        &mut problems,
        "docs/local-stack.md",
        "CloudFormation creates {} of the template's {} unconditional resources and skips {} of types it does not implement (a warning in its log, no error): the {} CloudWatch alarms,",
        &[
            ("the resources moto creates", (unconditional - skipped_by_moto).to_string()),
            ("the unconditional resources", unconditional.to_string()),
            ("the resources moto skips", skipped_by_moto.to_string()),
            ("the alarms", alarms.to_string()),
        ],
    );
    check_figures(
        &mut problems,
        "docs/local-stack.md",
        "The site's {} resources ({} with `InboundRuleSetName`)",
        &[
            ("the site's resources", site.to_string()),
            (
                "the site's resources with email commands",
                (site + inbound).to_string(),
            ),
        ],
    );

    // README's alarm table names every alarm.
    let readme = doc_text("README.md");
    let table = readme
        .split_once("| alarm `{env}-deployer-…` |")
        .and_then(|(_, rest)| rest.split_once("### Dead letters"))
        .map(|(table, _)| table)
        .expect(
            "README.md's alarm table (\"| alarm `{env}-deployer-…` |\" up to \"### Dead letters\")",
        );
    for (id, alarm) in resources(&doc, "AWS::CloudWatch::Alarm") {
        let name = alarm["Properties"]["AlarmName"]["Fn::Sub"]
            .as_str()
            .and_then(|n| n.strip_prefix("${Environment}-deployer-"))
            .unwrap_or_else(|| panic!("{id}'s AlarmName is not ${{Environment}}-deployer-…"));
        if !table.contains(&format!("`{name}`")) {
            problems.push(format!(
                "README.md's alarm table does not name {id} (`{name}`)"
            ));
        }
    }

    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}
