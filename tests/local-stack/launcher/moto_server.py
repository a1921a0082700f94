"""Local AWS emulator for Deployer: moto server (pinned 5.2.5) plus small fidelity patches.

Usage: python tests/local-stack/launcher/moto_server.py --port N

- binds 127.0.0.1:N;
- sets MOTO_PORT=N itself: moto's Step Functions interpreter sends its aws-sdk and
  optimised-integration calls to http://localhost:$MOTO_PORT, i.e. back to this server;
- enables real Step Functions execution (same effect as POST /moto-api/config with
  {"stepfunctions": {"execute_state_machine": true}});
- prints exactly one line, "moto ready on port N", once the socket is listening.

Fidelity patch (see docs/state-machine.md, "Emulator deviations"): moto's CloudFormation
never rolls back. When a resource fails while a change set is executed, moto raises out of
ExecuteChangeSet and leaves the stack half-made. On AWS, ExecuteChangeSet succeeds and the
failure is only seen by polling: the resource gets a CREATE_FAILED / UPDATE_FAILED event
carrying the error as ResourceStatusReason and the stack ends in ROLLBACK_COMPLETE (failed
create) or UPDATE_ROLLBACK_COMPLETE (failed update, previous template kept). The patch does
that. Two small fixes ride along: moto never records the new parameters of an executed
UPDATE change set (so a later identical deploy was not seen as "no changes"), nor the
Outputs of an executed change set (DescribeStacks showed none after a CREATE), and moto's
SendTaskFailure drops the `cause` (so a rejection reason never reached the state machine).
Workflow variables in JSONPath states are read, and assigned on choice rules, as on AWS
(sfn_variables.py: moto read them through a JSONata evaluator it does not ship).

Strictness patches (docs/local-stack.md, "Faults"):
- CloudFormation takes time: with a pace set (POST /_deployer/cloudformation
  {"delay_ms": N, "change_set_delay_ms": M}), change sets stay CREATE_PENDING then
  CREATE_IN_PROGRESS for M ms (default N), and stacks CREATE/UPDATE/DELETE_IN_PROGRESS
  (UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, ROLLBACK_IN_PROGRESS on the way to a rollback)
  for N ms, before they reach the end moto computed at once. Meanwhile ExecuteChangeSet
  of a change set that is not CREATE_COMPLETE is refused (InvalidChangeSetStatus), and
  so is any change to a stack whose operation is in progress (ValidationError "... is in
  UPDATE_IN_PROGRESS state and can not be updated."), as on AWS;
- DynamoDB's conditional writes are atomic (moto checked and wrote without a lock, so
  two racing conditional writes on one item could both succeed);
- an update that names a parameter still at its default does not "modify" the resources
  that reference it (moto compared against the previous input only);
- aws-sdk task errors are named as AWS names them ("CloudFormation.CloudFormationException",
  not moto's lowercase "cloudformation.cloudformationException");
- every request passes through the fault engine (faults.py);
- IAM is enforced: every request's action is checked against its caller's policies
  (iam.py; functions sign with sessions of their template roles);
- ECS rollouts end as ECS ends them, with the circuit breaker's rollback and ECS's
  events on the default bus (POST /_deployer/ecs/rollout, ecs.py).
"""

import argparse
import os
import signal
import sys


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def _patch_cloudformation_rollback():
    from moto.cloudformation import models as cfn_models
    from moto.cloudformation import parsing as cfn_parsing

    # 1. Remember which resource failed. ResourceMap looks these two functions up as
    #    module globals at call time, so rebinding them here is enough. Resources are
    #    created recursively (Ref/GetAtt), so the innermost (first tagged) one wins.
    def _tag_failure(fn):
        def wrapper(logical_id, resource_json, *args, **kwargs):
            try:
                return fn(logical_id, resource_json, *args, **kwargs)
            except Exception as exc:
                if not hasattr(exc, "deployer_logical_id"):
                    exc.deployer_logical_id = logical_id
                    exc.deployer_resource_type = (resource_json or {}).get("Type", "")
                raise

        return wrapper

    cfn_parsing.parse_and_create_resource = _tag_failure(cfn_parsing.parse_and_create_resource)
    cfn_parsing.parse_and_update_resource = _tag_failure(cfn_parsing.parse_and_update_resource)

    original_execute = cfn_models.CloudFormationBackend.execute_change_set

    # 2. ExecuteChangeSet: on failure, emit the AWS-like events, roll back, return normally.
    def execute_change_set(self, change_set_name, stack_name=None):
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        old_template = stack.template
        old_template_dict = stack.resource_map._template
        old_parameters = stack.resource_map.input_parameters
        try:
            original_execute(self, change_set_name, stack_name)
        except Exception as exc:
            _roll_back(stack, change_set, exc, old_template, old_template_dict, old_parameters)
            return
        # moto keeps the parameters of the first deploy forever; keep the executed ones.
        stack.parameters = change_set.parameters
        # moto evaluates a stack's Outputs when the stack is made, before a
        # change set creates its resources, and never again; AWS shows the
        # outputs of the template that was executed.
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    def _roll_back(stack, change_set, exc, old_template, old_template_dict, old_parameters):
        creating = change_set.change_set_type == "CREATE"
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        logical_id = getattr(exc, "deployer_logical_id", None)
        if logical_id:
            existed = logical_id in (old_template_dict or {}).get("Resources", {})
            stack.events.append(
                cfn_models.Event(
                    stack_id=stack.stack_id,
                    stack_name=stack.name,
                    logical_resource_id=logical_id,
                    physical_resource_id="",
                    resource_type=exc.deployer_resource_type,
                    resource_status="UPDATE_FAILED" if existed else "CREATE_FAILED",
                    resource_status_reason=reason,
                    resource_properties=None,
                )
            )
            summary = f"The following resource(s) failed to {'update' if existed else 'create'}: [{logical_id}]."
        else:
            summary = reason
        prefix = "ROLLBACK" if creating else "UPDATE_ROLLBACK"
        stack._add_stack_event(f"{prefix}_IN_PROGRESS", resource_status_reason=summary)
        try:
            if creating:
                stack.resource_map.delete()  # remove what was created before the failure
            else:
                stack.resource_map.update(old_template_dict, old_parameters)
                stack.template = old_template
                stack.output_map = stack._create_output_map()
            status = f"{prefix}_COMPLETE"
        except Exception:  # rollback itself failed, as it can on AWS
            status = f"{prefix}_FAILED"
        stack._add_stack_event(status)
        stack.status = status
        change_set.execution_status = "EXECUTE_FAILED"

    cfn_models.CloudFormationBackend.execute_change_set = execute_change_set


def _patch_send_task_failure_cause():
    # moto 5.2.5 StepFunctionResponse.send_task_failure reads taskToken and error but not cause.
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self):
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


def _patch_cloudformation_conditions():
    """Stack updates honour resource Conditions, as CloudFormation does.

    moto's update path re-parses every resource whatever its Condition says,
    so a conditional resource that was never created (site-build without a
    site) is "modified" on every update and fails on its first Fn::GetAtt.
    Here a resource whose condition is false is skipped (and deleted if it
    existed), and one whose condition became true is created.
    """
    from moto.cloudformation import parsing as cfn_parsing

    original_update = cfn_parsing.parse_and_update_resource

    def parse_and_update_resource(logical_id, resource_json, resources_map, *args, **kwargs):
        condition = resource_json.get("Condition")
        existing = resources_map._parsed_resources.get(logical_id)
        if condition and not resources_map.lazy_condition_map[condition]:
            if existing is not None:
                resources_map._delete_resource(existing, resource_json)
            return None
        if existing is None:
            return cfn_parsing.parse_and_create_resource(
                logical_id, resource_json, resources_map, *args, **kwargs
            )
        return original_update(logical_id, resource_json, resources_map, *args, **kwargs)

    cfn_parsing.parse_and_update_resource = parse_and_update_resource


class _Pace:
    """Operations CloudFormation has not finished yet, settled lazily on each request."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.delay = 0.0  # stack operations
        self.change_set_delay = 0.0
        self.steps = []  # (due, seq, callback)
        self.seq = 0

    def later(self, delay, fraction, callback):
        import time

        with self.lock:
            self.seq += 1
            self.steps.append((time.monotonic() + delay * fraction, self.seq, callback))

    def settle(self):
        import time

        now = time.monotonic()
        with self.lock:
            due = sorted(s for s in self.steps if s[0] <= now)
            self.steps = [s for s in self.steps if s[0] > now]
            for _, _, callback in due:
                callback()


PACE = _Pace()


def _busy(status):
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def _patch_cloudformation_pace():
    from moto.cloudformation import models as cfn_models
    from moto.cloudformation.exceptions import CloudFormationError, ValidationError

    class InvalidChangeSetStatus(CloudFormationError):
        code = "InvalidChangeSetStatus"

    backend = cfn_models.CloudFormationBackend
    original_create = backend.create_change_set
    original_execute = backend.execute_change_set
    original_delete = backend.delete_stack

    def _stack_named(self, name_or_id):
        for stack in self.stacks.values():
            if name_or_id in (stack.name, stack.stack_id):
                return stack
        return None

    def _refuse_if_busy(stack):
        if stack is not None and _busy(stack.status or ""):
            raise ValidationError(
                message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
            )

    def create_change_set(self, stack_name, change_set_name, *args, **kwargs):
        PACE.settle()
        _refuse_if_busy(_stack_named(self, stack_name))
        result = original_create(self, stack_name, change_set_name, *args, **kwargs)
        if PACE.change_set_delay > 0:
            change_set = self.change_sets[result[0]]
            final = (change_set.status, change_set.execution_status, change_set.status_reason)
            change_set.status, change_set.execution_status = "CREATE_PENDING", "UNAVAILABLE"
            change_set.status_reason = None

            def in_progress():
                change_set.status = "CREATE_IN_PROGRESS"

            def done():
                change_set.status, change_set.execution_status, change_set.status_reason = final

            PACE.later(PACE.change_set_delay, 0.3, in_progress)
            PACE.later(PACE.change_set_delay, 1.0, done)
        return result

    def execute_change_set(self, change_set_name, stack_name=None):
        PACE.settle()
        change_set = self.describe_change_set(change_set_name)
        if change_set.status != "CREATE_COMPLETE" or change_set.execution_status != "AVAILABLE":
            raise InvalidChangeSetStatus(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of"
                f" [{change_set.status}]"
            )
        stack = self.stacks[change_set.stack_id]
        _refuse_if_busy(stack)
        original_execute(self, change_set_name, stack_name)
        if PACE.delay <= 0:
            return
        final_stack, final_execution = stack.status, change_set.execution_status
        operation = change_set.change_set_type  # CREATE | UPDATE
        stack.status = f"{operation}_IN_PROGRESS"
        change_set.execution_status = "EXECUTE_IN_PROGRESS"

        def status(value):
            def apply():
                stack.status = value

            return apply

        if "ROLLBACK" in final_stack:
            prefix = "ROLLBACK" if operation == "CREATE" else "UPDATE_ROLLBACK"
            PACE.later(PACE.delay, 0.5, status(f"{prefix}_IN_PROGRESS"))
        elif operation == "UPDATE":
            PACE.later(PACE.delay, 0.7, status("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))

        def done():
            stack.status = final_stack
            change_set.execution_status = final_execution

        PACE.later(PACE.delay, 1.0, done)

    def delete_stack(self, name_or_stack_id):
        PACE.settle()
        stack = _stack_named(self, name_or_stack_id)
        if stack is None or PACE.delay <= 0:
            return original_delete(self, name_or_stack_id)
        if stack.status == "DELETE_IN_PROGRESS":
            return None  # DeleteStack is idempotent while a delete runs
        _refuse_if_busy(stack)
        stack.status = "DELETE_IN_PROGRESS"
        PACE.later(PACE.delay, 1.0, lambda: original_delete(self, stack.stack_id))
        return None

    backend.create_change_set = create_change_set
    backend.execute_change_set = execute_change_set
    backend.delete_stack = delete_stack


def _patch_aws_sdk_error_names():
    # AWS names aws-sdk integration errors "<ServiceId>.<Exception>" in PascalCase
    # (docs: supported-services-awssdk); moto falls back to the lowercase api name.
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    aws_sdk._SERVICE_ERROR_NAMES.update(
        {"cloudformation": "CloudFormation", "sns": "Sns", "s3": "S3", "ecs": "Ecs", "lambda": "Lambda"}
    )


class _Settle:
    """Settles CloudFormation's paced operations before any request is served."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        import json

        if environ.get("PATH_INFO") == "/_deployer/cloudformation" and environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            settings = json.loads(environ["wsgi.input"].read(length) or b"{}")
            PACE.delay = max(0.0, float(settings.get("delay_ms", 0)) / 1000)
            PACE.change_set_delay = max(
                0.0, float(settings.get("change_set_delay_ms", settings.get("delay_ms", 0))) / 1000
            )
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(settings).encode()]
        PACE.settle()
        return self.app(environ, start_response)


def _patch_dynamodb_atomic_writes():
    """DynamoDB's conditional writes are atomic, as on AWS.

    moto's server handles requests on many threads, and its DynamoDB backend
    reads an item, checks the condition and writes it back without a lock, so
    two conditional writes racing on one item could both succeed: two builds
    both took one stack's lock (tests/e2e/concurrency.rs caught it). Every
    write to the emulator's DynamoDB now runs under one lock (stricter than
    AWS's per-item atomicity, which is all the suite relies on).
    """
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()

    def atomic(original):
        def locked(self, *args, **kwargs):
            with lock:
                return original(self, *args, **kwargs)

        return locked

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        setattr(DynamoDBBackend, name, atomic(getattr(DynamoDBBackend, name)))


def _patch_cloudformation_template_url_decoding():
    """CloudFormation reads a TemplateURL's object key percent-decoded, as S3 does.

    moto looks the key up exactly as the URL spells it, so the template of a
    build whose branch holds a space, a quote or `<` (which the URL must
    percent-encode) was "not found" and the change set failed with a 500.
    """
    from urllib.parse import unquote, urlparse

    from moto.cloudformation import models as cfn_models
    from moto.cloudformation import responses as cfn_responses
    from moto.cloudformation import utils as cfn_utils

    def get_stack_from_s3_url(template_url, account_id, partition):
        from moto.s3.models import s3_backends

        parts = urlparse(template_url)
        path = parts.path.lstrip("/")
        path_style = "localhost" in template_url or (
            parts.netloc.endswith("amazonaws.com") and parts.netloc.startswith("s3")
        )
        if path_style:
            bucket_name, key_name = path.split("/", 1)
        else:
            bucket_name, key_name = parts.netloc.split(".")[0], path
        key = s3_backends[account_id][partition].get_object(bucket_name, unquote(key_name))
        return key.value.decode("utf-8")

    for module in (cfn_utils, cfn_models, cfn_responses):
        module.get_stack_from_s3_url = get_stack_from_s3_url


def _patch_update_diff_parameter_defaults():
    """A parameter left at its default is not "changed" by an update that names it.

    moto marks every resource that references a parameter whose value differs from
    the previous deploy's *input* as modified; a parameter the first deploy left to
    its default is missing from that input, so naming it later (UsePreviousValue
    resolves to the default) "modified" every resource that references it, though
    its value never changed. CloudFormation compares resolved values. Here the
    previous input is completed with the previous template's defaults.
    """
    from moto.cloudformation import parsing as cfn_parsing

    original = cfn_parsing.ResourceMap.build_resource_diff

    def build_resource_diff(self, other_template, parameters=None):
        if not parameters:
            return original(self, other_template, parameters)
        declared = (self._template or {}).get("Parameters") or {}
        defaults = {
            name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec
        }
        given = self.input_parameters
        self.input_parameters = {**defaults, **(given or {})}
        try:
            return original(self, other_template, parameters)
        finally:
            self.input_parameters = given

    cfn_parsing.ResourceMap.build_resource_diff = build_resource_diff


def main(argv=None):
    args = _parse_args(argv if argv is not None else sys.argv[1:])
    # Must be set before the interpreter makes its first call (read at call time).
    os.environ["MOTO_PORT"] = str(args.port)

    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ecs
    import faults
    import iam
    import sfn_variables

    from moto.core import DEFAULT_ACCOUNT_ID as account_id
    # Before the other patches import the interpreter's modules (iam.py).
    iam.patch_interpreter(account_id)
    _patch_cloudformation_conditions()
    _patch_cloudformation_rollback()
    _patch_send_task_failure_cause()
    _patch_cloudformation_pace()
    _patch_update_diff_parameter_defaults()
    _patch_cloudformation_template_url_decoding()
    _patch_dynamodb_atomic_writes()
    _patch_aws_sdk_error_names()
    sfn_variables.patch()
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    iam.enable(account_id)

    moto_app = DomainDispatcherApplication(create_backend_app)
    app = ecs.Rollouts(
        _Settle(
            iam.Control(
                faults.FaultMiddleware(moto_app, faults.Engine(), iam.caller_of(account_id)), account_id
            )
        ),
        account_id,
    )
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"moto ready on port {args.port}", flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
