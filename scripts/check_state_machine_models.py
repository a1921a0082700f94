"""Hold every Task state's arguments against the AWS service models (botocore's).

Usage (normally through `make state-machine-models`):

    python scripts/check_state_machine_models.py [state-machine/deployment.asl.json]

asl-validator checks that the definition is valid Amazon States Language, but not that
a Task's `Parameters` (JSONPath) or `Arguments` (JSONata) are what the API it calls
takes: a misspelt member (`StackNam`), a member the operation does not have, or a
required member left out is only found when the execution reaches that state. This
check finds them statically, for every Task state, including those inside Map
(`ItemProcessor`, `Iterator`) and Parallel (`Branches`) states:

* `arn:aws:states:::aws-sdk:<service>:<action>[.waitForTaskToken]`: the service is
  Step Functions' name for it, which is botocore's with the hyphens removed, except for
  the services in SFN_TO_BOTOCORE (from "Learning to use AWS service SDK integrations"
  in the Step Functions developer guide: Step Functions names them after the SDKs'
  service IDs, e.g. `sfn` for botocore's `stepfunctions`, `cloudwatchlogs` for `logs`).
  The action is the operation in camelCase, matched case-insensitively.
* The optimized integrations in OPTIMIZED (`arn:aws:states:::dynamodb:updateItem`,
  `lambda:invoke`, `sns:publish`, ...): the API each one calls, with the integration
  patterns (`.sync`, `.waitForTaskToken`) the developer guide lists for it, and the
  members documented to take any JSON (`lambda:invoke`'s Payload, `sns:publish`'s
  Message, ...).
* Anything else (a Lambda function or activity ARN, a `${Substitution}`, an optimized
  integration not in OPTIMIZED) is reported: no Task goes unchecked without saying so.

Members are named in PascalCase (Step Functions' convention, even where the model is
camelCase, e.g. ECS's `cluster` is `Cluster`; a member `Equals` is `EqualsValue`). A key
ending in `.$` (JSONPath) names the member without the suffix and its value is a path or
an intrinsic, so it is not looked into; nor is a JSONata `{% ... %}` value. Every member
named must be in the operation's input shape, and every member the model requires must
be given. Literal objects and lists are checked against the nested shapes in the same
way (map members, such as DynamoDB's `Key` and `ExpressionAttributeValues`, take any
keys; their values are checked against the map's value shape: `{"S": ...}` is a DynamoDB
AttributeValue). Scalar values (and `${Name}` definition substitutions in them) are not
checked.

Exits 0 printing `N tasks checked against the service models`, or 1 listing every
problem. Needs botocore (from the pinned awscli in requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions
import botocore.loaders
import botocore.model

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEFINITION = REPO / "state-machine" / "deployment.asl.json"

# Step Functions' AWS SDK service names that are not botocore's name with the hyphens
# removed. Step Functions names the services after the SDKs' service IDs (lowercased,
# without "Amazon"/"AWS" and a trailing "Service"); these are the names in the developer
# guide's list of supported services whose botocore name differs.
SFN_TO_BOTOCORE = {
    "applicationdiscovery": "discovery",
    "cloudwatchlogs": "logs",
    "cognitoidentityprovider": "cognito-idp",
    "costandusagereport": "cur",
    "costexplorer": "ce",
    "databasemigration": "dms",
    "directory": "ds",
    "directoryservicedata": "ds-data",
    "elasticloadbalancing": "elb",
    "elasticloadbalancingv2": "elbv2",
    "elasticsearch": "es",
    "eventbridge": "events",
    "iotjobsdataplane": "iot-jobs-data",
    "lexmodelbuilding": "lex-models",
    "lexmodelsv2": "lexv2-models",
    "lexruntimev2": "lexv2-runtime",
    "marketplacemetering": "meteringmarketplace",
    "migrationhub": "mgh",
    "serverlessapplicationrepository": "serverlessrepo",
    "sfn": "stepfunctions",
}
# botocore's names for those (as botocore spells them and without the hyphens), which
# Step Functions does not accept.
BOTOCORE_TO_SFN = {
    name: sfn for sfn, botocore_name in SFN_TO_BOTOCORE.items()
    for name in (botocore_name, botocore_name.replace("-", ""))
}

# Operations the developer guide lists as unsupported through the AWS SDK integration
# (streaming operations, mostly), by Step Functions service name.
UNSUPPORTED_SDK_OPERATIONS = {
    "applicationdiscovery": {"DescribeExportConfigurations", "ExportConfigurations"},
    "bedrockruntime": {"InvokeModelWithResponseStream", "ConverseStream"},
    "bedrockagentruntime": {
        "InvokeAgent", "InvokeFlow", "InvokeInlineAgent", "OptimizePrompt",
        "RetrieveAndGenerateStream",
    },
    "cloudwatchlogs": {"StartLiveTail"},
    "codedeploy": {
        "BatchGetDeploymentInstances", "GetDeploymentInstance", "ListDeploymentInstances",
        "SkipWaitTimeForInstanceTermination",
    },
    "comprehendmedical": {"DetectEntities"},
    "dataexchange": {"SendApiAsset"},
    "directconnect": {
        "AllocateConnectionOnInterconnect", "DescribeConnectionLoa",
        "DescribeConnectionsOnInterconnect", "DescribeInterconnectLoa",
    },
    "efs": {"CreateTags"},
    "elastictranscoder": {"TestRole"},
    "emr": {"DescribeJobFlows"},
    "iot": {
        "AttachPrincipalPolicy", "ListPrincipalPolicies", "DetachPrincipalPolicy",
        "ListPolicyPrincipals",
    },
    "iotdeviceadvisor": {"ListTestCases"},
    "iotsitewise": {"InvokeAssistant"},
    "kinesis": {"SubscribeToShard"},
    "lambda": {"InvokeAsync", "InvokeWithResponseStream"},
    "lexruntimev2": {"StartConversation"},
    "mediapackage": {"RotateChannelCredentials"},
    "qbusiness": {"Chat"},
    "rdsdata": {"ExecuteSql"},
    "s3": {"SelectObjectContent"},
    "s3control": {"SelectObjectContent"},
    "sagemakerruntime": {"InvokeEndpointWithResponseStream"},
    "shield": {"DeleteSubscription"},
    "sts": {"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"},
}
SDK_PATTERNS = frozenset({"", "waitForTaskToken"})


@dataclass(frozen=True)
class Optimized:
    """An optimized integration: the botocore service and operation it calls."""

    service: str
    operation: str
    patterns: frozenset[str] = frozenset({""})  # "" is request-response
    # Only these members, where the integration takes fewer than the API.
    members: frozenset[str] | None = None
    # Members (a path of member names, "[]" for a list's items) documented to take any
    # JSON, which Step Functions serialises for the API.
    json_members: frozenset[tuple[str, ...]] = field(default_factory=frozenset)


_CALLBACK = frozenset({"", "waitForTaskToken"})
_SYNC = frozenset({"", "sync"})

# From the developer guide's page on each optimized integration.
OPTIMIZED = {
    "lambda:invoke": Optimized(
        "lambda", "Invoke", _CALLBACK,
        members=frozenset(
            {"FunctionName", "Payload", "InvocationType", "Qualifier", "ClientContext", "LogType"}
        ),
        json_members=frozenset({("Payload",)}),
    ),
    "dynamodb:getItem": Optimized("dynamodb", "GetItem"),
    "dynamodb:putItem": Optimized("dynamodb", "PutItem"),
    "dynamodb:updateItem": Optimized("dynamodb", "UpdateItem"),
    "dynamodb:deleteItem": Optimized("dynamodb", "DeleteItem"),
    "sns:publish": Optimized(
        "sns", "Publish", _CALLBACK, json_members=frozenset({("Message",)}),
    ),
    "sqs:sendMessage": Optimized(
        "sqs", "SendMessage", _CALLBACK, json_members=frozenset({("MessageBody",)}),
    ),
    "events:putEvents": Optimized(
        "events", "PutEvents", _CALLBACK, json_members=frozenset({("Entries", "[]", "Detail")}),
    ),
    "states:startExecution": Optimized(
        "stepfunctions", "StartExecution", frozenset({"", "sync", "sync:2", "waitForTaskToken"}),
        json_members=frozenset({("Input",)}),
    ),
    "ecs:runTask": Optimized("ecs", "RunTask", frozenset({"", "sync", "waitForTaskToken"})),
    "batch:submitJob": Optimized("batch", "SubmitJob", _SYNC),
    "glue:startJobRun": Optimized("glue", "StartJobRun", _SYNC),
    "codebuild:startBuild": Optimized("codebuild", "StartBuild", _SYNC),
    "codebuild:stopBuild": Optimized("codebuild", "StopBuild"),
    "codebuild:batchDeleteBuilds": Optimized("codebuild", "BatchDeleteBuilds"),
    "codebuild:batchGetReports": Optimized("codebuild", "BatchGetReports"),
    "athena:startQueryExecution": Optimized("athena", "StartQueryExecution", _SYNC),
    "athena:stopQueryExecution": Optimized("athena", "StopQueryExecution"),
    "athena:getQueryExecution": Optimized("athena", "GetQueryExecution"),
    "athena:getQueryResults": Optimized("athena", "GetQueryResults"),
}

STATES_ARN = re.compile(r"^arn:aws(?:-[a-z-]+)?:states:::(?P<rest>.+)$")
SDK_RESOURCE = re.compile(
    r"^aws-sdk:(?P<service>[^:.]+):(?P<action>[^:.]+)(?:\.(?P<pattern>.+))?$"
)
OPTIMIZED_RESOURCE = re.compile(r"^(?P<integration>[^:.]+:[^:.]+)(?:\.(?P<pattern>.+))?$")


def sfn_member_name(member: str) -> str:
    """The name Step Functions gives a model member: PascalCase, Equals as EqualsValue."""
    if member == "Equals":
        return "EqualsValue"
    return member[:1].upper() + member[1:]


def is_expression(value) -> bool:
    """A JSONata expression, whose value cannot be known statically."""
    if not isinstance(value, str):
        return False
    value = value.strip()
    return value.startswith("{%") and value.endswith("%}")


@functools.lru_cache(maxsize=None)
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.Loader()


@functools.lru_cache(maxsize=None)
def service_model(service: str) -> botocore.model.ServiceModel | None:
    """botocore's model of a service (botocore's name), or None."""
    try:
        model = _loader().load_service_model(service, "service-2")
    except (botocore.exceptions.UnknownServiceError, botocore.exceptions.DataNotFoundError):
        return None
    return botocore.model.ServiceModel(model, service)


@functools.lru_cache(maxsize=None)
def _botocore_names() -> dict[str, str]:
    """Step Functions service name -> botocore service name."""
    names = {s.replace("-", ""): s for s in _loader().list_available_services("service-2")}
    for botocore_name in BOTOCORE_TO_SFN:
        names.pop(botocore_name, None)
    names.update(SFN_TO_BOTOCORE)
    return names


def botocore_service(sfn_name: str) -> str | None:
    """botocore's name for a Step Functions AWS SDK service name, or None."""
    return _botocore_names().get(sfn_name)


def find_operation(model: botocore.model.ServiceModel, action: str) -> str | None:
    """The model's operation for a Step Functions action, matched case-insensitively."""
    return {name.lower(): name for name in model.operation_names}.get(action.lower())


def _camel(operation: str) -> str:
    return operation[:1].lower() + operation[1:]


@dataclass(frozen=True)
class Target:
    """What a Task's Resource calls."""

    label: str  # for messages: "cloudformation DescribeStacks"
    operation: botocore.model.OperationModel
    members: frozenset[str] | None  # only these, when not None
    json_members: frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class _Args:
    """Where the arguments being checked belong."""

    where: str  # "state 'X' (resource)"
    api: str
    strip: bool  # JSONPath Parameters: a key ending in .$ names the member without it
    json_members: frozenset[tuple[str, ...]]


class Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.tasks = 0

    def problem(self, message: str) -> None:
        self.problems.append(message)

    # --- the definition -------------------------------------------------------------

    def check_states(self, states, scope: str) -> None:
        if not isinstance(states, dict):
            self.problem(f"{scope or 'definition: '}States is not an object")
            return
        for name, state in states.items():
            if not isinstance(state, dict):
                continue
            label = f"{scope}{name}"
            kind = state.get("Type")
            if kind == "Task":
                self.tasks += 1
                self.check_task(label, state)
            elif kind == "Map":
                processor = state.get("ItemProcessor") or state.get("Iterator") or {}
                self.check_states(processor.get("States", {}), f"{label} > ")
            elif kind == "Parallel":
                for i, branch in enumerate(state.get("Branches", [])):
                    self.check_states(branch.get("States", {}), f"{label} > branch {i} > ")

    # --- one Task -------------------------------------------------------------------

    def check_task(self, state: str, task: dict) -> None:
        resource = task.get("Resource")
        where = f"state '{state}' ({resource})"
        target = self.resolve(where, resource)
        if target is None:
            return
        key = next((k for k in ("Parameters", "Arguments") if k in task), None)
        args = task[key] if key else {}
        if is_expression(args):
            return  # JSONata: the whole argument object is computed at run time
        if not isinstance(args, dict):
            self.problem(f"{where}: {key} is not an object")
            return
        ctx = _Args(where, target.label, key != "Arguments", target.json_members)
        shape = target.operation.input_shape
        if shape is None:
            if args:
                self.problem(f"{where}: {target.label} takes no arguments")
            return
        self.check_structure(ctx, shape, args, key or "Parameters", (), target.members)

    def resolve(self, where: str, resource) -> Target | None:
        if not isinstance(resource, str):
            self.problem(f"{where}: Resource is not a string")
            return None
        arn = STATES_ARN.match(resource)
        if not arn:
            self.problem(
                f"{where}: not a Step Functions service integration this check can map (a Lambda "
                "function, activity or ${Substitution} Resource), so its arguments are not checked "
                "against a service model: call arn:aws:states:::lambda:invoke or an aws-sdk "
                "integration"
            )
            return None
        rest = arn.group("rest")
        if rest.startswith("aws-sdk:"):
            return self.resolve_sdk(where, rest)
        return self.resolve_optimized(where, rest)

    def resolve_sdk(self, where: str, rest: str) -> Target | None:
        sdk = SDK_RESOURCE.match(rest)
        if not sdk:
            self.problem(f"{where}: not of the form arn:aws:states:::aws-sdk:<service>:<action>")
            return None
        service, action, pattern = sdk.group("service", "action", "pattern")
        if (pattern or "") not in SDK_PATTERNS:
            self.problem(
                f"{where}: AWS SDK integrations take no '.{pattern}' pattern (only "
                "request-response and .waitForTaskToken)"
            )
            return None
        if service in BOTOCORE_TO_SFN:
            self.problem(
                f"{where}: unknown AWS SDK service '{service}' (botocore's name: Step Functions "
                f"calls it '{BOTOCORE_TO_SFN[service]}')"
            )
            return None
        botocore_name = botocore_service(service)
        model = service_model(botocore_name) if botocore_name else None
        if model is None:
            close = difflib.get_close_matches(service, list(_botocore_names()), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            self.problem(f"{where}: unknown AWS SDK service '{service}'{hint}")
            return None
        operation = find_operation(model, action)
        if operation is None:
            by_lower = {o.lower(): o for o in model.operation_names}
            close = difflib.get_close_matches(action.lower(), list(by_lower), n=3)
            hint = ", ".join(_camel(by_lower[c]) for c in close)
            self.problem(
                f"{where}: service '{service}' has no operation '{action}'"
                + (f" (did you mean {hint}?)" if hint else "")
            )
            return None
        if operation in UNSUPPORTED_SDK_OPERATIONS.get(service, ()):
            self.problem(
                f"{where}: Step Functions does not support {operation} through the AWS SDK "
                "integration"
            )
            return None
        label = service if botocore_name == service else f"{service} (botocore {botocore_name})"
        return Target(
            f"{label} {operation}", model.operation_model(operation), None, frozenset()
        )

    def resolve_optimized(self, where: str, rest: str) -> Target | None:
        opt = OPTIMIZED_RESOURCE.match(rest)
        name = opt.group("integration") if opt else rest
        integration = OPTIMIZED.get(name)
        if integration is None:
            self.problem(
                f"{where}: an optimized integration this check does not model (it knows "
                f"{', '.join(sorted(OPTIMIZED))}), so its arguments are not checked"
            )
            return None
        pattern = opt.group("pattern") or ""
        if pattern not in integration.patterns:
            allowed = ", ".join(f".{p}" if p else "request-response" for p in integration.patterns)
            self.problem(
                f"{where}: {name} does not support the '.{pattern}' pattern (it takes "
                f"{allowed})"
            )
            return None
        model = service_model(integration.service)
        if model is None or integration.operation not in model.operation_names:
            self.problem(f"{where}: botocore has no {integration.service} {integration.operation}")
            return None
        return Target(
            f"{integration.service} {integration.operation}",
            model.operation_model(integration.operation),
            integration.members,
            integration.json_members,
        )

    # --- shapes ---------------------------------------------------------------------

    def check_structure(self, ctx: _Args, shape, obj: dict, path: str, mpath: tuple,
                        only: frozenset[str] | None = None) -> None:
        members = {sfn_member_name(m): m for m in shape.members}
        if only is not None:
            members = {k: v for k, v in members.items() if k in only}
        given = set()
        for key, value in obj.items():
            dynamic = ctx.strip and key.endswith(".$")
            name = key[:-2] if dynamic else key
            if name not in members:
                self.problem(self.unknown_member(ctx, shape, members, path, key, name))
                continue
            if name in given:
                self.problem(f"{ctx.where}: {path}.{name} is given twice")
            given.add(name)
            if dynamic or value is None:
                continue  # a path or an intrinsic: known at run time only
            member = shape.members[members[name]]
            self.check_value(ctx, member, value, f"{path}.{name}", mpath + (name,))
        required = [sfn_member_name(m) for m in shape.required_members]
        missing = [m for m in required if m in members and m not in given]
        if missing:
            nested = "" if not mpath else f" ({shape.name})"
            self.problem(
                f"{ctx.where}: {path} lacks {', '.join(missing)}, required by {ctx.api}{nested}"
            )
        if shape.is_tagged_union and len(given) > 1:
            self.problem(
                f"{ctx.where}: {path} sets {', '.join(sorted(given))}, but {shape.name} takes "
                "exactly one of them"
            )

    def check_value(self, ctx: _Args, shape, value, path: str, mpath: tuple) -> None:
        if mpath in ctx.json_members or is_expression(value):
            return
        kind = shape.type_name
        if kind == "structure" and shape.is_document_type:
            return  # any JSON
        if isinstance(value, dict):
            if kind == "structure":
                self.check_structure(ctx, shape, value, path, mpath)
            elif kind == "map":  # any keys; the values are of the map's value shape
                for key, item in value.items():
                    if item is None or (ctx.strip and key.endswith(".$")):
                        continue
                    self.check_value(ctx, shape.value, item, f"{path}.{key}", mpath + ("{}",))
            else:
                self.problem(f"{ctx.where}: {path} is an object, but {ctx.api} takes a {kind}")
        elif isinstance(value, list):
            if kind == "list":
                for i, item in enumerate(value):
                    if item is not None:
                        self.check_value(ctx, shape.member, item, f"{path}[{i}]", mpath + ("[]",))
            else:
                self.problem(f"{ctx.where}: {path} is a list, but {ctx.api} takes a {kind}")
        elif kind in ("structure", "list", "map"):
            self.problem(
                f"{ctx.where}: {path} is {json.dumps(value)}, but {ctx.api} takes a {kind}"
            )

    @staticmethod
    def unknown_member(ctx: _Args, shape, members: dict, path: str, key: str, name: str) -> str:
        by_lower = {m.lower(): m for m in members}
        if name.lower() in by_lower:
            hint = f" (names are case-sensitive: did you mean {by_lower[name.lower()]}?)"
        elif not ctx.strip and key.endswith(".$"):
            hint = " (JSONata Arguments take no .$ suffix)"
        else:
            close = difflib.get_close_matches(name, list(members), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
        owner = f"{shape.name} in {ctx.api}" if "." in path or "[" in path else ctx.api
        return (
            f"{ctx.where}: {path}.{key}: {owner} has no member '{name}'{hint}; valid members: "
            f"{', '.join(members) or '(none)'}"
        )


def check_definition(definition) -> tuple[int, list[str]]:
    """(number of Task states, problems) for a parsed state machine definition."""
    if not isinstance(definition, dict) or "States" not in definition:
        return 0, ["definition: no States"]
    checker = Checker()
    checker.check_states(definition["States"], "")
    return checker.tasks, checker.problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "definition", nargs="?", default=str(DEFAULT_DEFINITION), help="the ASL JSON file",
    )
    args = parser.parse_args(argv)
    try:
        definition = json.loads(Path(args.definition).read_text())
    except (OSError, ValueError) as e:
        print(f"{args.definition}: {e}", file=sys.stderr)
        return 2
    tasks, problems = check_definition(definition)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(
            f"{args.definition}: {len(problems)} problem(s) in {tasks} tasks checked against the "
            "service models",
            file=sys.stderr,
        )
        return 1
    print(f"{tasks} tasks checked against the service models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
