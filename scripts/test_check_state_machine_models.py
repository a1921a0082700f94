"""Unit tests for check_state_machine_models: the check passes what the service models
take and fails what they do not, naming the state, the member and the operation.

    .venv/bin/python -m unittest scripts/test_check_state_machine_models.py

The planted mistakes are in small inline definitions; the last test runs the check on the
real state-machine/deployment.asl.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_state_machine_models as check  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

DESCRIBE_STACKS = "arn:aws:states:::aws-sdk:cloudformation:describeStacks"
CREATE_CHANGE_SET = "arn:aws:states:::aws-sdk:cloudformation:createChangeSet"
GET_ITEM = "arn:aws:states:::dynamodb:getItem"
UPDATE_ITEM = "arn:aws:states:::dynamodb:updateItem"


def task(resource: str, arguments=None, *, key: str = "Parameters") -> dict:
    state = {"Type": "Task", "Resource": resource, "End": True}
    if arguments is not None:
        state[key] = arguments
    return state


def machine(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


def run(definition: dict) -> tuple[int, list[str]]:
    return check.check_definition(definition)


class PlantedMistakes(unittest.TestCase):
    def assertOneProblem(self, definition: dict, *fragments: str) -> str:
        _, problems = run(definition)
        self.assertEqual(len(problems), 1, problems)
        for fragment in fragments:
            self.assertIn(fragment, problems[0])
        return problems[0]

    def assertClean(self, definition: dict, tasks: int = 1) -> None:
        self.assertEqual(run(definition), (tasks, []))

    def test_a_misspelt_member_fails_naming_it_the_operation_and_the_valid_members(self):
        self.assertOneProblem(
            machine(Describe=task(DESCRIBE_STACKS, {"StackNam": "app"})),
            "state 'Describe'", DESCRIBE_STACKS, "Parameters.StackNam",
            "cloudformation DescribeStacks has no member 'StackNam'", "did you mean StackName?",
            "valid members: StackName, NextToken",
        )

    def test_a_dollar_suffix_key_is_matched_without_the_suffix(self):
        self.assertClean(machine(Describe=task(DESCRIBE_STACKS, {"StackName.$": "$.stack"})))
        self.assertOneProblem(
            machine(Describe=task(DESCRIBE_STACKS, {"StackNam.$": "$.stack"})),
            "has no member 'StackNam'",
        )

    def test_a_missing_required_member_fails(self):
        self.assertOneProblem(
            machine(Create=task(CREATE_CHANGE_SET, {"StackName.$": "$.stack", "TemplateURL": "u"})),
            "state 'Create'", "Parameters lacks ChangeSetName",
            "required by cloudformation CreateChangeSet",
        )
        # No Parameters at all: the required members are still missing.
        self.assertOneProblem(machine(Read=task(GET_ITEM)), "Parameters lacks TableName, Key")

    def test_an_unknown_operation_fails(self):
        self.assertOneProblem(
            machine(Describe=task("arn:aws:states:::aws-sdk:cloudformation:describeStack", {})),
            "state 'Describe'", "arn:aws:states:::aws-sdk:cloudformation:describeStack",
            "service 'cloudformation' has no operation 'describeStack'",
            "did you mean describeStacks",
        )

    def test_an_unknown_service_fails(self):
        self.assertOneProblem(
            machine(Describe=task("arn:aws:states:::aws-sdk:cloudformations:describeStacks", {})),
            "state 'Describe'", "arn:aws:states:::aws-sdk:cloudformations:describeStacks",
            "unknown AWS SDK service 'cloudformations'",
        )

    def test_a_wrong_member_in_a_literal_nested_structure_fails(self):
        trigger = {"Arn": "arn:alarm", "Type": "AWS::CloudWatch::Alarm", "Name": "errors"}
        params = {
            "StackName": "app", "ChangeSetName": "cs",
            "RollbackConfiguration": {"RollbackTriggers": [trigger]},
        }
        self.assertOneProblem(
            machine(Create=task(CREATE_CHANGE_SET, params)),
            "state 'Create'", "Parameters.RollbackConfiguration.RollbackTriggers[0].Name",
            "RollbackTrigger in cloudformation CreateChangeSet has no member 'Name'",
            "valid members: Arn, Type",
        )
        # The nested structure's own required members are checked too.
        del trigger["Name"], trigger["Type"]
        self.assertOneProblem(
            machine(Create=task(CREATE_CHANGE_SET, params)), "RollbackTriggers[0] lacks Type",
        )
        # A member whose value is a path is not looked into.
        params["RollbackConfiguration"] = {"RollbackTriggers.$": "$.policy.rollback_triggers"}
        self.assertClean(machine(Create=task(CREATE_CHANGE_SET, params)))

    def test_dynamodb_maps_take_any_keys_and_their_attribute_values_are_checked(self):
        params = {
            "TableName": "t",
            "Key": {"pk": {"S": "build#1"}, "sk.$": "$.sk"},
            "UpdateExpression": "SET #s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":s": {"S": "RUNNING"}, ":n": {"N.$": "States.Format('{}', $.n)"},
            },
        }
        self.assertClean(machine(Claim=task(UPDATE_ITEM, params)))
        params["ExpressionAttributeValues"][":s"] = {"Str": "RUNNING"}
        self.assertOneProblem(
            machine(Claim=task(UPDATE_ITEM, params)),
            "Parameters.ExpressionAttributeValues.:s.Str",
            "AttributeValue in dynamodb UpdateItem has no member 'Str'",
        )

    def test_a_literal_of_the_wrong_kind_fails(self):
        params = {"StackName": "a", "ChangeSetName": "c", "RollbackConfiguration": []}
        self.assertOneProblem(
            machine(Create=task(CREATE_CHANGE_SET, params)),
            "Parameters.RollbackConfiguration is a list", "takes a structure",
        )
        # The AWS SDK integration takes EventBridge's Detail as a string
        # (States.JsonToString)...
        entries = {"Entries": [{"Source": "s", "DetailType": "d", "Detail": {"a": 1}}]}
        self.assertOneProblem(
            machine(Put=task("arn:aws:states:::aws-sdk:eventbridge:putEvents", entries)),
            "Parameters.Entries[0].Detail is an object", "takes a string",
        )
        # ... the optimized integration takes any JSON there.
        self.assertClean(machine(Put=task("arn:aws:states:::events:putEvents", entries)))

    def test_member_names_are_pascal_case_even_where_the_model_is_camel_case(self):
        run_task = "arn:aws:states:::ecs:runTask.sync"
        self.assertClean(machine(Run=task(run_task, {"Cluster": "c", "TaskDefinition": "td"})))
        self.assertOneProblem(
            machine(Run=task(run_task, {"cluster": "c", "TaskDefinition": "td"})),
            "has no member 'cluster'", "did you mean Cluster?",
        )

    def test_step_functions_service_names_map_to_botocore(self):
        start = {"StateMachineArn": "arn:sm", "Input": "{}"}
        self.assertClean(machine(Start=task("arn:aws:states:::aws-sdk:sfn:startExecution", start)))
        self.assertClean(
            machine(Logs=task("arn:aws:states:::aws-sdk:cloudwatchlogs:describeLogGroups", {}))
        )
        # botocore's own name is not Step Functions'.
        self.assertOneProblem(
            machine(Start=task("arn:aws:states:::aws-sdk:stepfunctions:startExecution", start)),
            "unknown AWS SDK service 'stepfunctions'", "calls it 'sfn'",
        )
        for sfn_name, botocore_name in check.SFN_TO_BOTOCORE.items():
            with self.subTest(sfn_name):
                self.assertIsNotNone(check.service_model(botocore_name), botocore_name)
                self.assertEqual(check.botocore_service(sfn_name), botocore_name)

    def test_optimized_integrations_take_their_documented_members_and_patterns(self):
        invoke = {"FunctionName": "${GatesArn}", "Payload": {"build.$": "$.b", "any": [{"x": 1}]}}
        self.assertClean(machine(Gate=task("arn:aws:states:::lambda:invoke", invoke)))
        self.assertOneProblem(
            machine(Gate=task("arn:aws:states:::lambda:invoke", {"FunctionName": "f", "Input": 1})),
            "lambda Invoke has no member 'Input'",
            "valid members: FunctionName, InvocationType, LogType, ClientContext, Payload, "
            "Qualifier",
        )
        self.assertOneProblem(
            machine(Claim=task(UPDATE_ITEM + ".waitForTaskToken", {"TableName": "t", "Key": {}})),
            "dynamodb:updateItem does not support the '.waitForTaskToken' pattern",
        )
        self.assertOneProblem(
            machine(Describe=task(DESCRIBE_STACKS + ".sync", {})),
            "AWS SDK integrations take no '.sync' pattern",
        )
        notify = {"TopicArn": "${Topic}", "Message": {"TaskToken.$": "$$.Task.Token"}}
        self.assertClean(
            machine(Notify=task("arn:aws:states:::sns:publish.waitForTaskToken", notify))
        )

    def test_resources_it_cannot_map_are_reported_not_skipped(self):
        for resource in (
            "arn:aws:lambda:us-east-1:123456789012:function:gates",
            "arn:aws:states:us-east-1:123456789012:activity:approve",
            "${GatesFunctionArn}",
            "arn:aws:states:::http:invoke",
        ):
            with self.subTest(resource):
                _, problems = run(machine(Call=task(resource)))
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(f"state 'Call' ({resource})", problems[0])

    def test_jsonata_arguments(self):
        definition = machine(Describe=task(DESCRIBE_STACKS, {"StackName": "{% $stack %}"},
                                           key="Arguments"))
        definition["QueryLanguage"] = "JSONata"
        self.assertClean(definition)
        # The whole Arguments object may be one expression: only the Resource is checked.
        describe = definition["States"]["Describe"]
        describe["Arguments"] = "{% {'StackName': $stack} %}"
        self.assertClean(definition)
        describe["Arguments"] = {"StackName.$": "$.stack"}
        self.assertOneProblem(
            definition, "Arguments.StackName.$", "has no member 'StackName.$'",
            "JSONata Arguments take no .$ suffix",
        )

    def test_map_and_parallel_tasks_are_checked(self):
        def describe():
            return machine(Describe=task(DESCRIBE_STACKS, {"StackName.$": "$.name"}))

        read = machine(Read=task(GET_ITEM, {"TableName": "t", "Key": {"pk": {"S": "x"}}}))
        definition = machine(
            Fan={"Type": "Parallel", "Branches": [describe(), read], "Next": "Each"},
            Each={
                "Type": "Map",
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **describe()},
                "Next": "Old",
            },
            Old={"Type": "Map", "Iterator": describe(), "End": True},
        )
        self.assertClean(definition, tasks=4)
        inner = definition["States"]["Each"]["ItemProcessor"]["States"]["Describe"]
        inner["Parameters"] = {"StackNam.$": "$.name"}
        self.assertOneProblem(definition, "state 'Each > Describe'", "has no member 'StackNam'")
        inner["Parameters"] = {}
        read["States"]["Read"]["Parameters"]["Key"] = {"pk": {"Q": "x"}}
        self.assertOneProblem(definition, "state 'Fan > branch 1 > Read'", "Parameters.Key.pk.Q")


class CommandLine(unittest.TestCase):
    def main(self, path: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = check.main([path])
        return rc, out.getvalue(), err.getvalue()

    def main_on(self, definition: dict) -> tuple[int, str, str]:
        with tempfile.NamedTemporaryFile("w", suffix=".asl.json", delete=False) as f:
            json.dump(definition, f)
        self.addCleanup(os.unlink, f.name)
        return self.main(f.name)

    def test_exit_1_listing_every_problem(self):
        definition = machine(
            A=task(DESCRIBE_STACKS, {"StackNam": "x"}),
            B=task("arn:aws:states:::aws-sdk:cloudformation:describeStack"),
        )
        rc, out, err = self.main_on(definition)
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("state 'A'", err)
        self.assertIn("state 'B'", err)
        self.assertIn("2 problem(s) in 2 tasks", err)

    def test_exit_0_with_a_summary(self):
        rc, out, _ = self.main_on(machine(A=task(DESCRIBE_STACKS, {})))
        self.assertEqual((rc, out), (0, "1 tasks checked against the service models\n"))

    def test_the_real_definition_passes(self):
        rc, out, err = self.main(str(REPO / "state-machine" / "deployment.asl.json"))
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^\d+ tasks checked against the service models\n$")


if __name__ == "__main__":
    unittest.main()
