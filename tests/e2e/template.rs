//! Properties of `cloudformation.template` every change must keep.

use serde_json::Value;

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
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
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
    assert!(functions.len() >= 3);
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
