"""ECS rollouts that end, as ECS ends them (moto never ends one).

moto 5.2.5 keeps a service's one deployment IN_PROGRESS forever, has no
deployment circuit breaker and sends no "ECS Deployment State Change" events.
On AWS a rollout completes, or fails and (with the circuit breaker's rollback)
is rolled back to the last deployment that completed. This control API lets a
test end the current rollout the way ECS would, from the service's own
deployment configuration, and puts ECS's events on the default event bus,
where the install's rules route them like any other:

POST /_deployer/ecs/rollout {"cluster", "service", "outcome": "completed"|"failed",
                             "reason"?, "region"?}

- completed: the PRIMARY deployment is COMPLETED (the ones it replaced are
  drained); SERVICE_DEPLOYMENT_COMPLETED.
- failed: only with the circuit breaker on (without it ECS keeps launching
  tasks and nothing fails: the answer says so and no event is sent). The
  deployment is FAILED; SERVICE_DEPLOYMENT_FAILED (eventType ERROR). With
  rollback on and a deployment that completed before, a new PRIMARY
  deployment of that one's task definition starts, the service's task
  definition goes back to it, and SERVICE_DEPLOYMENT_IN_PROGRESS says
  "ECS deployment circuit breaker: rolling back to deploymentId {id}.".

The answer lists the events sent.
"""

import json
import threading
from datetime import datetime, timezone

PATH = "/_deployer/ecs/rollout"


class Rollouts:
    def __init__(self, app, account_id):
        self.app = app
        self.account_id = account_id
        self.lock = threading.Lock()
        # service ARN -> the last deployment that COMPLETED: {"id", "taskDefinition"}
        self.completed = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with self.lock:
                answer = self.end(request)
            status = "200 OK"
        except (KeyError, ValueError) as err:
            answer, status = {"error": f"bad rollout request: {err}"}, "400 Bad Request"
        except Exception as err:  # moto's ServiceNotFound, ClusterNotFound
            answer, status = {"error": f"{type(err).__name__}: {err}"}, "404 Not Found"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(answer, default=str).encode()]

    def end(self, request):
        from moto.ecs.models import ecs_backends
        from moto.moto_api._internal import mock_random

        region = request.get("region", "us-east-1")
        outcome = request["outcome"]
        if outcome not in ("completed", "failed"):
            raise ValueError(f"outcome must be completed or failed, not {outcome!r}")
        service = ecs_backends[self.account_id][region]._get_service(
            request["cluster"], request["service"]
        )
        primary = next(d for d in service.deployments if d["status"] == "PRIMARY")
        # moto keeps the create-time task definition on its one deployment.
        primary["taskDefinition"] = service.task_definition
        now = datetime.now(timezone.utc)
        events = []
        if outcome == "completed":
            primary.update(
                rolloutState="COMPLETED",
                rolloutStateReason=f"ECS deployment {primary['id']} completed.",
                runningCount=service.desired_count,
                pendingCount=0,
                updatedAt=now,
            )
            service.deployments[:] = [primary]
            self.completed[service.arn] = {
                "id": primary["id"],
                "taskDefinition": primary["taskDefinition"],
            }
            events.append(("INFO", "SERVICE_DEPLOYMENT_COMPLETED", primary["id"], primary["rolloutStateReason"]))
            return self.send(service, events, region, now)
        configuration = getattr(service, "deployment_configuration", None) or {}
        breaker = configuration.get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable"):
            return {
                "failed": False,
                "reason": "the deployment circuit breaker is off: ECS keeps launching tasks",
                "events": [],
            }
        reason = request.get("reason") or "ECS deployment circuit breaker: tasks failed to start."
        primary.update(rolloutState="FAILED", rolloutStateReason=reason, updatedAt=now)
        events.append(("ERROR", "SERVICE_DEPLOYMENT_FAILED", primary["id"], reason))
        last = self.completed.get(service.arn)
        if breaker.get("rollback") and last and last["id"] != primary["id"]:
            primary["status"] = "ACTIVE"
            back = f"ECS deployment circuit breaker: rolling back to deploymentId {last['id']}."
            rollback = dict(
                primary,
                id=f"ecs-svc/{mock_random.randint(0, 32**12)}",
                status="PRIMARY",
                taskDefinition=last["taskDefinition"],
                rolloutState="IN_PROGRESS",
                rolloutStateReason=back,
                failedTasks=0,
                createdAt=now,
                updatedAt=now,
            )
            service.deployments.insert(0, rollback)
            service.task_definition = last["taskDefinition"]
            events.append(("INFO", "SERVICE_DEPLOYMENT_IN_PROGRESS", rollback["id"], back))
        answer = self.send(service, events, region, now)
        answer["failed"] = True
        return answer

    def send(self, service, events, region, now):
        from moto.events.models import events_backends

        # ECS's long ARN format (moto answers the short one unless told).
        arn = f"arn:aws:ecs:{region}:{self.account_id}:service/{service.cluster_name}/{service.name}"
        updated_at = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        entries = [
            {
                "Source": "aws.ecs",
                "DetailType": "ECS Deployment State Change",
                "Resources": [arn],
                "Detail": json.dumps(
                    {
                        "eventType": event_type,
                        "eventName": name,
                        "deploymentId": deployment_id,
                        "updatedAt": updated_at,
                        "reason": reason,
                    }
                ),
                "EventBusName": "default",
            }
            for event_type, name, deployment_id, reason in events
        ]
        if entries:
            events_backends[self.account_id][region].put_events(entries)
        return {"events": [json.loads(e["Detail"]) for e in entries]}
