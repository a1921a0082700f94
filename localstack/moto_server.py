"""Local AWS emulator for Deployer: moto server (pinned 5.2.5) plus small fidelity patches.

Usage: python localstack/moto_server.py --port N

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
UPDATE change set (so a later identical deploy was not seen as "no changes"), and moto's
SendTaskFailure drops the `cause` (so a rejection reason never reached the state machine).
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

    _patch_cloudformation_conditions()
    _patch_cloudformation_rollback()
    _patch_send_task_failure_cause()
    default_user_config["stepfunctions"] = {"execute_state_machine": True}

    app = DomainDispatcherApplication(create_backend_app)
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
