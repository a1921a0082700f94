"""IAM enforcement for the local stack (docs/local-stack.md, "IAM enforcement").

moto checks every request's action against the caller's IAM policies once
INITIAL_NO_AUTH_ACTION_COUNT is 0. This module turns that on and gives the emulator
its identities:

- the harness (provisioning, the tests' own clients, the `deployer` CLI) signs as the
  IAM user `deployer-admin`, access key id `testing`, allowed everything;
- each function signs with a session of its own template role: the harness installs
  the roles (POST /_deployer/iam/roles, below) and hands each function the session's
  ASIA key, secret and token; the session is named after the function;
- moto's Step Functions interpreter signs with a session of the execution's role
  (named "ak", the name it has always signed with) when that role exists in IAM,
  else as the IAM user `states-interpreter` (access key id `ak`), allowed everything.

The fault engine names a caller by its session name (`caller_of`), so a function's
faults still aim at the function's name.

Deviations from IAM, each because moto cannot evaluate it:
- a statement's Resource is only compared where moto knows the request's resource
  (S3 buckets and objects, SQS queues, STS AssumeRole); elsewhere (moto passes "*")
  an Allow is taken to cover the request, and a Deny applies only when its Resource
  is "*": the action alone decides;
- Conditions of identity policies are not evaluated (moto has no request context for
  them and would treat every conditional Allow as an explicit Deny);
- signatures are checked for role sessions only: the harness's raw calls are signed
  with a placeholder; a presigned URL is authorized as its signer (moto fails
  without an Authorization header), its signature is not checked; an unsigned
  request is refused as AWS refuses it (moto answered 500);
- DynamoDB transactions need the actions of their items (PutItem, UpdateItem, ...),
  as on AWS, not moto's dynamodb:TransactWriteItems; an S3 multi-object delete needs
  s3:DeleteObject on each key, not on the bucket.

Every denial is logged on stderr as "deployer-iam: AccessDenied <principal> <action>",
and appended to the file DEPLOYER_IAM_DENIALS names, when set (to collect a whole
test run's denials).

Control API (JSON), outside AWS's paths:

    POST /_deployer/iam/roles   {"roles": [{"name", "trust", "policies": {name: doc},
                                  "managed": [arn]}],
                                 "sessions": [{"role": name, "session": name}]}
                                -> {"credentials": {session: {"AccessKeyId",
                                    "SecretAccessKey", "SessionToken"}}}

Roles are created, or their policies replaced when they exist; a session is what
Lambda gives a function when it assumes the function's role for it.
"""

import json
import threading

ADMIN_USER = "deployer-admin"
ADMIN_KEY = ("testing", "testing")
INTERPRETER_USER = "states-interpreter"
INTERPRETER_KEY = ("ak", "sk")
INTERPRETER_SESSION = "ak"
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def _iam(account_id):
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"]


def _sts(account_id):
    from moto.sts.models import sts_backends

    return sts_backends[account_id]["aws"]


def _user_with_key(account_id, user_name, key_id, secret):
    iam = _iam(account_id)
    iam.create_user("us-east-1", user_name)
    iam.put_user_policy(user_name, "allow-all", _ALLOW_ALL)
    key = iam.create_access_key(user_name)
    # Fixed key ids, so every client the harness builds signs as this user.
    del iam.access_keys[key.access_key_id]
    key.access_key_id, key.secret_access_key = key_id, secret
    iam.access_keys[key_id] = key


def enable(account_id):
    """Creates the exempt identities, then turns enforcement on."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError, JsonRESTError
    from moto.iam import access_control
    from moto.s3.exceptions import S3AccessDeniedError

    _user_with_key(account_id, ADMIN_USER, *ADMIN_KEY)
    _user_with_key(account_id, INTERPRETER_USER, *INTERPRETER_KEY)

    statement = access_control.IAMPolicyStatement
    original_matches = statement._check_element_matches
    original_conditions = statement._check_conditions
    original_is_permitted = statement.is_action_permitted

    def _check_element_matches(self, element, value):
        # moto passes "*" when it does not know the request's resource: an
        # Allow is taken to cover it, a Deny only when it names every resource.
        if element == "Resource" and value == "*" and self._statement.get("Effect") == "Allow":
            return True
        return original_matches(self, element, value)

    local = threading.local()

    def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
        local.identity_policy = principal is None
        return original_is_permitted(self, action, resource, principal, incoming_condition_values)

    def _check_conditions(self, incoming_condition_values):
        if getattr(local, "identity_policy", False):
            return True
        return original_conditions(self, incoming_condition_values)

    statement._check_element_matches = _check_element_matches
    statement.is_action_permitted = is_action_permitted
    statement._check_conditions = _check_conditions

    original_init = access_control.IAMRequestBase.__init__

    def __init__(self, account_id, method, path, data, body, headers, action):
        # A presigned URL carries its signer's credential in the query (moto
        # reads only the Authorization header, and fails without one).
        self._presigned = False
        if "Authorization" not in headers:
            from urllib.parse import parse_qs

            query = {k.lower(): v[0] for k, v in parse_qs(path.partition("?")[2]).items()}
            credential = query.get("x-amz-credential")  # SigV4
            if not credential and query.get("awsaccesskeyid"):  # SigV2 (S3 only)
                credential = f"{query['awsaccesskeyid']}/19700101/us-east-1/s3/aws4_request"
            if credential:
                self._presigned = True
                headers = {k: v for k, v in headers.items()}
                headers["Authorization"] = (
                    f"AWS4-HMAC-SHA256 Credential={credential}, "
                    f"SignedHeaders={query.get('x-amz-signedheaders', 'host')}, "
                    f"Signature={query.get('x-amz-signature') or query.get('signature', '')}"
                )
                token = query.get("x-amz-security-token")
                if token:
                    headers["X-Amz-Security-Token"] = token
            else:
                _refuse_unsigned(self, headers)
        original_init(self, account_id, method, path, data, body, headers, action)

    access_control.IAMRequestBase.__init__ = __init__

    class MissingAuthenticationToken(AccessDeniedError):
        def __init__(self):
            super().__init__("", "")
            self.description = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>MissingAuthenticationToken</Code>"
                "<Message>Request is missing Authentication Token</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            )

    def _refuse_unsigned(request, headers):
        # As AWS answers an unsigned request (moto failed with a 500).
        if isinstance(request, access_control.S3IAMRequest):
            raise S3AccessDeniedError()
        if headers.get("X-Amz-Target"):
            raise JsonRESTError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
        raise MissingAuthenticationToken()

    original_signature = access_control.IAMRequestBase.check_signature

    def check_signature(self):
        if isinstance(self._access_key, access_control.AssumedRoleAccessKey) and not self._presigned:
            original_signature(self)

    access_control.IAMRequestBase.check_signature = check_signature

    original_denied = access_control.IAMRequest._raise_access_denied

    class QueryAccessDenied(AccessDeniedError):
        """The query protocol's error document (moto wraps it in <Errors>, which
        the SDKs do not parse)."""

        def __init__(self, user_arn, action):
            super().__init__(user_arn, action)
            from xml.sax.saxutils import escape

            self.description = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                f"<Message>{escape(self.message)}</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            )

    def _raise_access_denied(self):
        message = f"User: {self._access_key.arn} is not authorized to perform: {self._action}"
        # Each protocol's own error shape: JSON services answer
        # AccessDeniedException, query services an <ErrorResponse>.
        if self._headers.get("X-Amz-Target"):
            raise JsonRESTError("AccessDeniedException", message)
        if self._service == "ec2":
            original_denied(self)
        raise QueryAccessDenied(self._access_key.arn, self._action)

    access_control.IAMRequest._raise_access_denied = _raise_access_denied

    original_check = access_control.IAMRequestBase.check_action_permitted

    def check_action_permitted(self, resource):
        actions = _authorized_actions(self._action, self._body)
        resources = _authorized_resources(self._service, self._action, self._path, self._body, resource)
        try:
            for action in actions:
                self._action = action
                for each in resources:
                    original_check(self, each)
        except Exception:
            _log_denial(f"deployer-iam: AccessDenied {self._access_key.arn} {self._action}")
            raise

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted

    ActionAuthenticatorMixin.request_count = 0
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


# DynamoDB authorizes a transaction by the actions of its items: there is no
# dynamodb:TransactWriteItems or dynamodb:TransactGetItems IAM action.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


# moto names an action by the service's endpoint prefix; IAM's prefix differs.
_IAM_SERVICE_PREFIX = {"monitoring": "cloudwatch"}


def _authorized_actions(action, body):
    """The IAM actions a request needs (moto names the API operation)."""
    prefix, _, operation = action.partition(":")
    if prefix in _IAM_SERVICE_PREFIX:
        return [f"{_IAM_SERVICE_PREFIX[prefix]}:{operation}"]
    if action not in ("dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"):
        return [action]
    try:
        items = json.loads(body or b"{}").get("TransactItems") or []
    except ValueError:
        return [action]
    needed = []
    for item in items:
        for kind in item:
            mapped = _TRANSACT_ITEM_ACTIONS.get(kind)
            if mapped and mapped not in needed:
                needed.append(mapped)
    return needed or [action]


def _log_denial(line):
    import os
    import sys

    print(line, file=sys.stderr, flush=True)
    collect = os.environ.get("DEPLOYER_IAM_DENIALS")
    if collect:
        with open(collect, "a") as out:
            out.write(line + "\n")


def _authorized_resources(service, action, path, body, resource):
    """The resources a request is authorized on (moto checks a multi-object
    delete on the bucket; S3 checks s3:DeleteObject on each key)."""
    if service != "s3" or action != "s3:DeleteObject" or "delete" not in path.partition("?")[2]:
        return [resource]
    import xmltodict

    objects = (xmltodict.parse(body or b"<Delete/>").get("Delete") or {}).get("Object") or []
    if not isinstance(objects, list):
        objects = [objects]
    return [f"{resource}/{obj['Key']}" for obj in objects if obj.get("Key")] or [resource]


def caller_of(account_id):
    """The fault engine's name for an access key: its role session's name, else the key."""
    cache = {}
    lock = threading.Lock()

    def resolve(access_key_id):
        if not access_key_id.startswith("ASIA"):
            return access_key_id
        with lock:
            if access_key_id in cache:
                return cache[access_key_id]
        session = _sts(account_id).get_assumed_role_from_access_key(access_key_id)
        name = session.session_name if session is not None else access_key_id
        with lock:
            cache[access_key_id] = name
        return name

    return resolve


def _install(account_id, request):
    iam = _iam(account_id)
    from moto.iam.exceptions import NotFoundException

    for role in request.get("roles", []):
        name = role["name"]
        trust = json.dumps(role.get("trust") or {})
        try:
            existing = iam.get_role(name)
        except NotFoundException:
            existing = None
        if existing is None:
            iam.create_role(name, trust, "/", None, "", [], None)
        else:
            existing.assume_role_policy_document = trust
            for policy_name in list(existing.policies):
                iam.delete_role_policy(name, policy_name)
        for policy_name, document in (role.get("policies") or {}).items():
            iam.put_role_policy(name, policy_name, json.dumps(document))
        for arn in role.get("managed") or []:
            iam.attach_role_policy(arn, name)
    credentials = {}
    for session in request.get("sessions", []):
        assumed = _assume(account_id, iam.get_role(session["role"]).arn, session["session"])
        credentials[session["session"]] = {
            "AccessKeyId": assumed.access_key_id,
            "SecretAccessKey": assumed.secret_access_key,
            "SessionToken": assumed.session_token,
        }
    return {"credentials": credentials}


# The Step Functions interpreter's role sessions (by role ARN) and where its
# `lambda:invoke` tasks go.
INTERPRETER = {"sessions": {}, "lock": threading.Lock(), "lambda_endpoint": None}


def _route_interpreter(account_id, request):
    """POST /_deployer/iam/interpreter {"role_arn", "lambda_endpoint"}.

    Sends the interpreter's Lambda calls to `lambda_endpoint` and answers the
    access key id its session of `role_arn` signs with, so the local Lambda
    API can let it in as IAM would.
    """
    role_arn = request["role_arn"]
    session = _interpreter_session(account_id, role_arn)
    if session is None:
        raise ValueError(f"no role {role_arn}")
    with INTERPRETER["lock"]:
        INTERPRETER["lambda_endpoint"] = request.get("lambda_endpoint") or None
    return {"AccessKeyId": session.access_key_id}


def _interpreter_session(account_id, role_arn):
    """The interpreter's one session of `role_arn` (None: no such role)."""
    from moto.iam.exceptions import NotFoundException

    try:
        _iam(account_id).get_role_by_arn(role_arn)
    except NotFoundException:
        return None
    with INTERPRETER["lock"]:
        sessions = INTERPRETER["sessions"]
        if role_arn not in sessions:
            sessions[role_arn] = _assume(account_id, role_arn, INTERPRETER_SESSION)
        return sessions[role_arn]


def _assume(account_id, role_arn, session_name):
    # As the service principal the trust policy names (lambda, states) would.
    return _sts(account_id).assume_role(
        region_name="us-east-1",
        role_session_name=session_name,
        role_arn=role_arn,
        policy=None,
        duration=43200,
        external_id=None,
    )


class Control:
    """WSGI middleware serving POST /_deployer/iam/roles and /_deployer/iam/interpreter."""

    def __init__(self, app, account_id):
        self.app = app
        self.account_id = account_id

    def __call__(self, environ, start_response):
        handlers = {"/_deployer/iam/roles": _install, "/_deployer/iam/interpreter": _route_interpreter}
        handler = handlers.get(environ.get("PATH_INFO"))
        if handler is None or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            result = handler(self.account_id, json.loads(environ["wsgi.input"].read(length) or b"{}"))
            status = "200 OK"
        except Exception as exc:  # reported to the harness, which fails the pipeline's start
            result, status = {"error": f"{type(exc).__name__}: {exc}"}, "400 Bad Request"
        data = json.dumps(result).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def patch_interpreter(account_id):
    """moto's Step Functions interpreter acts with the execution's role.

    Must run before any interpreter module imports `boto_client_for`.
    """
    import sys

    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for

    def boto_client_for(region, service, state_credentials=None):
        import boto3
        from botocore.config import Config
        from moto.settings import moto_server_port
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

        role_arn = getattr(state_credentials, "role_arn", None)
        session = _interpreter_session(account_id, role_arn) if role_arn else None
        if session is None:
            return original(region, service, state_credentials)
        # moto's Lambda needs Docker to run a function: `lambda:invoke`
        # tasks go to the local stack's Lambda API, which runs the real
        # binaries (POST /_deployer/iam/interpreter says where it is).
        endpoint = f"http://localhost:{moto_server_port()}"
        if service == "lambda" and INTERPRETER["lambda_endpoint"]:
            endpoint = INTERPRETER["lambda_endpoint"]
        # As the original, with the session's credentials instead of "ak".
        return boto3.client(
            service_name=service,
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=session.access_key_id,
            aws_secret_access_key=session.secret_access_key,
            aws_session_token=session.session_token,
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
        )

    boto_client.boto_client_for = boto_client_for
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions") and getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = boto_client_for
