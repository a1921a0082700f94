"""The local stack's fault engine: AWS API faults for every caller of the emulator.

A WSGI middleware around moto's app. Every request is attributed to a caller (the
name of the role session its SigV4 access key belongs to: each function signs with a
session of its role named after the function, the Step Functions interpreter with one
named "ak"; any other key is its own name, e.g. "testing" for the harness), a service (the credential scope's signing
name) and an operation (X-Amz-Target, the query protocol's Action, or the REST
method and path). Named rules decide which calls fail, and how:

- throttle: the service's own throttling error, in its protocol's shape, with a
  code the SDKs classify as throttling;
- server_error: a 500 (503 for S3) the SDKs classify as transient;
- delay: the call is held for `delay_ms` before it reaches the emulator;
- delay_response: the call takes effect, its answer is held for `delay_ms`
  (a client timing out meanwhile never learns that it worked).

A rule matches on caller, service and operation ("*" for any) and, when it names
one, on text its request body contains (`body_contains`), skips its first
`after` matches, fires at most `times` times (null: always), each with
`probability` drawn from one seeded RNG. Control API (JSON), outside AWS's paths:

    POST   /_deployer/faults          add a rule, returns {"id": N}
    GET    /_deployer/faults          rules, injected faults, call counts
    DELETE /_deployer/faults          remove every rule (the log is kept)
    POST   /_deployer/seed            {"seed": N}
"""

import io
import json
import random
import re
import threading
import time
import uuid
from urllib.parse import parse_qs

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request")

# The throttling code each service answers with (all in the SDKs' throttling lists).
_THROTTLE_CODES = {
    "dynamodb": "ProvisionedThroughputExceededException",
    "s3": "SlowDown",
    "lambda": "TooManyRequestsException",
    "cloudformation": "Throttling",
    "sns": "Throttling",
    "sqs": "RequestThrottled",
    "cloudfront": "Throttling",
    "ses": "TooManyRequestsException",
}
_SERVER_CODES = {
    "dynamodb": "InternalServerError",
    "s3": "InternalError",
    "lambda": "ServiceException",
}
# Services whose API is the query protocol (XML errors in an ErrorResponse).
_QUERY = {"cloudformation", "sns", "iam", "sts", "ec2", "monitoring"}
# REST-XML services answer <Error> documents.
_REST_XML = {"s3", "cloudfront"}


class Engine:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1
        self.injected = []
        self.calls = {}
        self.rng = random.Random(0)

    def add(self, rule):
        with self.lock:
            rule = {
                "id": self.next_id,
                "name": rule.get("name") or f"rule-{self.next_id}",
                "caller": rule.get("caller", "*"),
                "service": rule.get("service", "*"),
                "operation": rule.get("operation", "*"),
                "body_contains": rule.get("body_contains") or "",
                "kind": rule["kind"],
                "delay_ms": int(rule.get("delay_ms", 0)),
                "after": int(rule.get("after", 0)),
                "times": rule.get("times"),
                "probability": float(rule.get("probability", 1.0)),
                "seen": 0,
                "fired": 0,
            }
            if rule["kind"] not in ("throttle", "server_error", "delay", "delay_response"):
                raise ValueError(f"unknown fault kind {rule['kind']!r}")
            self.rules.append(rule)
            self.next_id += 1
            return rule["id"]

    def decide(self, caller, service, operation, body=b""):
        with self.lock:
            key = f"{caller} {service} {operation}"
            self.calls[key] = self.calls.get(key, 0) + 1
            for rule in self.rules:
                if not (
                    rule["caller"] in ("*", caller)
                    and rule["service"] in ("*", service)
                    and rule["operation"] in ("*", operation)
                    and rule["body_contains"].encode() in body
                ):
                    continue
                rule["seen"] += 1
                if rule["seen"] <= rule["after"]:
                    continue
                if rule["times"] is not None and rule["fired"] >= int(rule["times"]):
                    continue
                if rule["probability"] < 1.0 and self.rng.random() >= rule["probability"]:
                    continue
                rule["fired"] += 1
                self.injected.append(
                    {
                        "rule": rule["name"],
                        "kind": rule["kind"],
                        "caller": caller,
                        "service": service,
                        "operation": operation,
                        "at": time.time(),
                    }
                )
                return dict(rule)
            return None

    def state(self):
        with self.lock:
            return {"rules": list(self.rules), "injected": list(self.injected), "calls": dict(self.calls)}


def _operation(environ, service, body):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if "Action" in query:
        return query["Action"][0]
    ctype = environ.get("CONTENT_TYPE", "")
    if body and "x-www-form-urlencoded" in ctype:
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    if service == "s3":
        parts = [p for p in path.split("/") if p]
        has_key = len(parts) > 1
        if method == "PUT":
            if not has_key:
                return "CreateBucket"
            return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
        if method == "GET":
            if has_key:
                return "GetObject"
            return "ListObjectsV2" if "list-type" in query else "ListObjects"
        if method == "HEAD":
            return "HeadObject" if has_key else "HeadBucket"
        if method == "DELETE":
            return "DeleteObject" if has_key else "DeleteBucket"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
    if service == "lambda" and "/invocations" in path:
        return "Invoke"
    return f"{method} {path}"


def _error_response(rule, service, start_response):
    throttle = rule["kind"] == "throttle"
    if throttle:
        code = _THROTTLE_CODES.get(service, "ThrottlingException")
        message = "Rate exceeded"
        status = "503 Slow Down" if service == "s3" else ("429 Too Many Requests" if service == "lambda" else "400 Bad Request")
    else:
        code = _SERVER_CODES.get(service, "InternalFailure")
        message = "We encountered an internal error. Please try again."
        status = "503 Service Unavailable" if service == "s3" else "500 Internal Server Error"
    request_id = str(uuid.uuid4())
    if service in _QUERY:
        body = (
            '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
            f"<Error><Type>{'Sender' if throttle else 'Receiver'}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml")]
    elif service in _REST_XML:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        headers = [("Content-Type", "application/xml")]
    else:
        body = json.dumps({"__type": code, "message": message})
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", code)]
    headers.append(("x-amzn-RequestId", request_id))
    data = body.encode()
    headers.append(("Content-Length", str(len(data))))
    start_response(status, headers)
    return [data]


class FaultMiddleware:
    def __init__(self, app, engine, caller_of=lambda access_key_id: access_key_id):
        self.app = app
        self.engine = engine
        self.caller_of = caller_of

    def _control(self, environ, start_response, body):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        try:
            if path == "/_deployer/faults" and method == "POST":
                result = {"id": self.engine.add(json.loads(body or b"{}"))}
            elif path == "/_deployer/faults" and method == "GET":
                result = self.engine.state()
            elif path == "/_deployer/faults" and method == "DELETE":
                with self.engine.lock:
                    self.engine.rules.clear()
                result = {"cleared": True}
            elif path == "/_deployer/seed" and method == "POST":
                with self.engine.lock:
                    self.engine.rng.seed(int(json.loads(body)["seed"]))
                result = {"seeded": True}
            else:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [b'{"error": "unknown control path"}']
        except (ValueError, KeyError) as exc:
            data = json.dumps({"error": str(exc)}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [data]
        data = json.dumps(result).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("PATH_INFO", "").startswith("/_deployer/"):
            return self._control(environ, start_response, body)
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not match:
            return self.app(environ, start_response)
        caller, service = self.caller_of(match.group(1)), match.group(2)
        rule = self.engine.decide(caller, service, _operation(environ, service, body), body)
        if rule is None:
            return self.app(environ, start_response)
        if rule["kind"] in ("throttle", "server_error"):
            return _error_response(rule, service, start_response)
        if rule["kind"] == "delay":
            time.sleep(rule["delay_ms"] / 1000)
            return self.app(environ, start_response)
        # delay_response: the call takes effect now, its answer comes late.
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: captured.setdefault("early", []).append(data)

        chunks = list(self.app(environ, capture))
        time.sleep(rule["delay_ms"] / 1000)
        start_response(captured["status"], captured["headers"])
        return captured.get("early", []) + chunks
