"""Deploy Deployer itself: upload the packaged code and create or update its stack.

Usage (normally through `make deploy ENV=dev [VERSION=...] [CODE_BUCKET=...] [CFN_ROLE_ARN=...]`):

    python scripts/deploy.py --env dev --version 0.1.0-4d891bc [--dist dist]
        [--code-bucket NAME] [--cfn-role-arn ARN] [--architecture arm64|x86_64]
        [--parameter Key=Value ...] [--review]

1. Checks `dist/` (from `make package`): the function zips (FUNCTIONS, as in the
   Makefile), each holding a `bootstrap` built for one architecture, and the state machine
   definition; SHA256SUMS, when present, must match.
2. Creates the code bucket if it does not exist (default: the one the stack already
   uses, else `{env}-deployer-code-{account}-{region}`; public access blocked).
3. Uploads the zips, `deployment.asl.json`, SHA256SUMS and the template under
   `deployer/{version}/`. The stack references the code by that prefix, so a new
   version is a new key and CloudFormation updates the functions and the state machine.
4. Creates or updates the stack `{env}-deployer` through a change set (a stack left in
   ROLLBACK_COMPLETE by a failed first create is deleted and created again; "no changes"
   is a success), follows its events to the end and prints the status and outputs.
   Exits 1 when the deploy fails, naming the first resource that failed and why.
   With --review it stops after printing the change set's changes and leaves the change
   set to be executed (or deleted) by hand.

It uses the standard AWS SDK environment (AWS_PROFILE, AWS_REGION, credentials...);
AWS_ENDPOINT_URL aims every call at an emulator. Nothing here is emulator-specific.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parent.parent
# Every function zip the template names (${CodePrefix}{name}.zip); the Makefile's FUNCTIONS.
FUNCTIONS = ("s3-trigger", "trigger-build", "ci-dispatch", "site-build", "site-builder", "gates")
DEFINITION = "deployment.asl.json"
SUMS = "SHA256SUMS"
TEMPLATE = "cloudformation.template"
# Parameters this script sets itself; --parameter may not override them.
MANAGED_PARAMETERS = ("Environment", "CodeBucket", "CodePrefix", "CloudFormationRoleArn")
# ELF e_machine values of the two architectures Lambda runs.
ELF_MACHINES = {0xB7: "arm64", 0x3E: "x86_64"}
SUCCESS = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


class DeployError(Exception):
    """A problem the user can fix; printed without a traceback."""


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="the stack is {env}-deployer")
    parser.add_argument("--version", required=True, help="uploads go under deployer/{version}/")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="`make package` output")
    parser.add_argument("--template", type=Path, default=ROOT / TEMPLATE)
    parser.add_argument(
        "--code-bucket",
        help="created if missing; default: the deployed stack's, else "
        "{env}-deployer-code-{account}-{region}",
    )
    parser.add_argument(
        "--cfn-role-arn",
        help="role CloudFormation assumes to deploy user stacks; "
        "required on the first deploy, kept afterwards",
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(set(ELF_MACHINES.values())),
        help="must match the zips; read from the bootstrap binaries when omitted",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other template parameter (repeatable); unset ones keep their deployed value",
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds to wait for the stack")
    parser.add_argument(
        "--review",
        action="store_true",
        help="create the change set and print it, but do not execute it",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9]{1,10}", args.env):
        parser.error(f"--env {args.env!r}: 1 to 10 lower-case letters or digits")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", args.version):
        parser.error(
            f"--version {args.version!r}: letters, digits, '.', '_', '-' (an S3 key prefix)"
            + ("; empty: not a git checkout? pass VERSION=" if not args.version else "")
        )
    return args


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r}: expected Key=Value")
        if key in MANAGED_PARAMETERS:
            raise DeployError(
                f"--parameter {key}: set by the deploy itself "
                "(--env, --version, --code-bucket, --cfn-role-arn)"
            )
        parameters[key] = value
    return parameters


# ---------------------------------------------------------------- the package


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bootstrap_architecture(zip_path: Path) -> str | None:
    """The architecture of the zip's `bootstrap` ELF binary; None if it is not ELF."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            if "bootstrap" not in archive.namelist():
                raise DeployError(
                    f"{zip_path}: no file named bootstrap (Lambda's OS-only runtimes run it)"
                )
            with archive.open("bootstrap") as f:
                header = f.read(20)
    except zipfile.BadZipFile as exc:
        raise DeployError(f"{zip_path}: not a zip ({exc})") from exc
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byteorder = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], byteorder)
    if machine not in ELF_MACHINES:
        raise DeployError(f"{zip_path}: bootstrap is for ELF machine {machine:#x}, not Lambda's")
    return ELF_MACHINES[machine]


def check_package(dist: Path, requested_arch: str | None) -> tuple[list[Path], str | None]:
    """The files to upload, and the architecture to deploy (None: the template default)."""
    zips = [dist / f"{name}.zip" for name in FUNCTIONS]
    files = zips + [dist / DEFINITION]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DeployError(f"missing {', '.join(missing)}: run `make package` first")
    sums = dist / SUMS
    if sums.is_file():
        for line in sums.read_text().splitlines():
            if not line.strip():
                continue
            expected, name = line.split(maxsplit=1)
            path = dist / name.lstrip("*")
            if not path.is_file() or sha256(path) != expected:
                raise DeployError(
                    f"{path} does not match {sums}: dist/ is half rebuilt; run `make package`"
                )
        files.append(sums)

    found = {z.name: bootstrap_architecture(z) for z in zips}
    built_for = set(found.values()) - {None}
    if len(built_for) > 1:
        raise DeployError(f"the zips are built for different architectures: {found}")
    if built_for:
        arch = built_for.pop()
        if requested_arch and requested_arch != arch:
            raise DeployError(
                f"ARCH={requested_arch} but the bootstrap binaries are {arch}: "
                f"`make package ARCH={requested_arch}` first, or deploy with ARCH={arch}"
            )
        return files, arch
    return files, requested_arch


def code_prefix(version: str, files: list[Path]) -> str:
    """deployer/{version}/. A dirty tree's version names no commit, so its prefix also
    carries the package's digest: rebuilding and redeploying then changes the code keys."""
    if version.endswith("-dirty"):
        digest = hashlib.sha256("".join(sha256(p) for p in files).encode()).hexdigest()
        version = f"{version}-{digest[:8]}"
    return f"deployer/{version}/"


# ----------------------------------------------------------------- the bucket


def ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"bucket {bucket} exists but this account cannot use it; pass CODE_BUCKET="
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    log(f"creating code bucket {bucket}")
    create = {"Bucket": bucket}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**create)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def template_url(bucket: str, region: str, key: str) -> str:
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    if "." in bucket:  # a dotted name breaks the virtual-hosted certificate
        return f"https://s3.{region}.{domain}/{bucket}/{key}"
    return f"https://{bucket}.s3.{region}.{domain}/{key}"


# ------------------------------------------------------------------ the stack


def describe_stack(cfn, name: str) -> dict | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


class Waiter:
    """Polls quickly at first (an emulator answers at once), then every 10 s."""

    def __init__(self, timeout: int, what: str):
        self.deadline = time.monotonic() + timeout
        self.what = what
        self.delay = 1.0

    def sleep(self) -> None:
        if time.monotonic() > self.deadline:
            raise DeployError(f"gave up waiting for {self.what}")
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 10.0)


class EventLog:
    """Prints the stack's events as they arrive and keeps those of this operation."""

    def __init__(self, cfn, stack_id: str):
        self.cfn = cfn
        self.stack_id = stack_id
        self.seen: set[str] = set()
        self.events: list[dict] = []
        # Everything before now is history; poll() stops at the newest event it has seen.
        for event in self.cfn.describe_stack_events(StackName=stack_id)["StackEvents"]:
            self.seen.add(event["EventId"])

    def _newest_first(self):
        pages = self.cfn.get_paginator("describe_stack_events").paginate(StackName=self.stack_id)
        for page in pages:
            yield from page["StackEvents"]

    def poll(self) -> None:
        new = []
        for event in self._newest_first():
            if event["EventId"] in self.seen:
                break
            new.append(event)
        for event in reversed(new):
            self.seen.add(event["EventId"])
            self.events.append(event)
            reason = event.get("ResourceStatusReason")
            log(f"  {describe_event(event)}" + (f": {reason}" if reason else ""))

    def first_failure(self) -> dict | None:
        failed = [
            e
            for e in self.events
            if e["ResourceStatus"].endswith("_FAILED")
            and e.get("ResourceType") != "AWS::CloudFormation::Stack"
        ]
        # On AWS the siblings of the failing resource fail too, as "Resource creation cancelled".
        real = [e for e in failed if "cancelled" not in (e.get("ResourceStatusReason") or "")]
        return (real or failed or [None])[0]


def describe_event(event: dict) -> str:
    resource = f"{event['LogicalResourceId']} ({event.get('ResourceType', '')})"
    return f"{resource} {event['ResourceStatus']}"


def delete_failed_create(cfn, stack: dict, timeout: int) -> None:
    """A first create that failed leaves ROLLBACK_COMPLETE, which can only be deleted."""
    log(f"{stack['StackName']} is ROLLBACK_COMPLETE from a failed first create: deleting it")
    cfn.delete_stack(StackName=stack["StackId"])
    waiter = Waiter(timeout, f"{stack['StackName']} to be deleted")
    while True:
        current = describe_stack(cfn, stack["StackId"])
        if current is None or current["StackStatus"] == "DELETE_COMPLETE":
            return
        if current["StackStatus"] == "DELETE_FAILED":
            reason = current.get("StackStatusReason", "")
            raise DeployError(f"deleting {stack['StackName']} failed: {reason}")
        waiter.sleep()


def stack_parameters(
    template: dict,
    existing: dict | None,
    managed: dict[str, str | None],
    extra: dict[str, str],
) -> list[dict]:
    declared = template.get("Parameters", {})
    unknown = sorted(set(extra) - set(declared))
    if unknown:
        raise DeployError(f"the template has no parameter {', '.join(unknown)}")
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])}
    result = []
    for key in declared:
        value = managed.get(key, extra.get(key))
        if value is not None:
            result.append({"ParameterKey": key, "ParameterValue": value})
        elif key in previous:
            # Unset on the command line: keep what the stack has, not the template default.
            result.append({"ParameterKey": key, "UsePreviousValue": True})
        elif key == "CloudFormationRoleArn":
            raise DeployError(
                "CloudFormationRoleArn is required on the first deploy: pass CFN_ROLE_ARN= "
                "(the role CloudFormation assumes to deploy user stacks)"
            )
    return result


def change_set_name(version: str) -> str:
    return f"deploy-{re.sub(r'[^A-Za-z0-9]+', '-', version)}-{int(time.time())}"[:128]


def check_stack(cfn, name: str) -> dict | None:
    """The stack as it is (None: not there); refuses states no deploy can move on from."""
    existing = describe_stack(cfn, name)
    if existing is None:
        return None
    status = existing["StackStatus"]
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"{name} is {status}: another operation is running; retry when it ends")
    if status in ("UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "ROLLBACK_FAILED"):
        raise DeployError(f"{name} is {status}: continue the rollback or delete the stack first")
    return existing


def deploy_stack(
    cfn,
    existing: dict | None,
    name: str,
    url: str,
    parameters: list[dict],
    version: str,
    timeout: int,
    review: bool = False,
) -> dict:
    if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        delete_failed_create(cfn, existing, timeout)
        existing = None
    # REVIEW_IN_PROGRESS: a create change set was never executed; create again.
    creating = existing is None or existing["StackStatus"] == "REVIEW_IN_PROGRESS"

    cs_name = change_set_name(version)
    log(f"{'creating' if creating else 'updating'} stack {name} (change set {cs_name})")
    created = cfn.create_change_set(
        StackName=name,
        ChangeSetName=cs_name,
        ChangeSetType="CREATE" if creating else "UPDATE",
        TemplateURL=url,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
        Description=f"Deployer {version}",
    )
    change_set_id, stack_id = created["Id"], created["StackId"]

    waiter = Waiter(timeout, f"change set {cs_name}")
    while True:
        change_set = cfn.describe_change_set(ChangeSetName=change_set_id)
        if change_set["Status"] == "CREATE_COMPLETE":
            break
        if change_set["Status"] == "FAILED":
            reason = change_set.get("StatusReason", "")
            if any(marker in reason for marker in NO_CHANGES):
                log("no changes: the stack already runs this version with these parameters")
                cfn.delete_change_set(ChangeSetName=change_set_id)
                return describe_stack(cfn, stack_id)
            raise DeployError(f"change set {cs_name} failed: {reason}")
        waiter.sleep()

    for change in change_set.get("Changes", []):
        rc = change.get("ResourceChange", {})
        replace = " (replacement)" if rc.get("Replacement") == "True" else ""
        action = rc.get("Action", "?")
        log(f"  {action:<6} {rc.get('LogicalResourceId')} {rc.get('ResourceType')}{replace}")
    if review:
        log(f"change set {cs_name} is ready for review and was not executed; apply it with")
        log(f"  aws cloudformation execute-change-set --change-set-name {change_set_id}")
        log("or delete it with delete-change-set; a deploy without --review makes a new one")
        return describe_stack(cfn, stack_id)

    events = EventLog(cfn, stack_id)
    cfn.execute_change_set(ChangeSetName=change_set_id)
    waiter = Waiter(timeout, f"stack {name}")
    while True:
        events.poll()
        stack = describe_stack(cfn, stack_id)
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        waiter.sleep()
    if status not in SUCCESS:
        failure = events.first_failure()
        where = (
            f"{describe_event(failure)}: {failure.get('ResourceStatusReason', '')}"
            if failure
            else stack.get("StackStatusReason", "no failed resource reported")
        )
        raise DeployError(f"{name} ended {status}; first failure: {where}")
    return stack


# ---------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        extra = parse_parameters(args.parameter)
        files, arch = check_package(args.dist, args.architecture or extra.get("Architecture"))
        if arch:
            extra["Architecture"] = arch
        template_text = args.template.read_text()
        template = json.loads(template_text)

        # AWS_REGION as the other AWS SDKs read it; this boto3 only knows AWS_DEFAULT_REGION.
        session = boto3.Session(region_name=os.environ.get("AWS_REGION") or None)
        region = session.region_name
        if not region:
            raise DeployError("no AWS region: set AWS_REGION (or a profile with a region)")
        account = session.client("sts").get_caller_identity()["Account"]
        s3 = session.client("s3")
        cfn = session.client("cloudformation")

        name = f"{args.env}-deployer"
        existing = check_stack(cfn, name)
        # Parameters to keep come only from a stack that was created; the others start anew.
        created = existing is not None and existing["StackStatus"] not in (
            "ROLLBACK_COMPLETE",
            "REVIEW_IN_PROGRESS",
        )
        deployed = {
            p["ParameterKey"]: p.get("ParameterValue")
            for p in (existing["Parameters"] if created else [])
        }
        bucket = (
            args.code_bucket
            or deployed.get("CodeBucket")
            or f"{args.env}-deployer-code-{account}-{region}"
        )
        prefix = code_prefix(args.version, files)
        managed = {
            "Environment": args.env,
            "CodeBucket": bucket,
            "CodePrefix": prefix,
            "CloudFormationRoleArn": args.cfn_role_arn,
        }
        parameters = stack_parameters(template, existing if created else None, managed, extra)

        ensure_bucket(s3, bucket, region)
        for path in files:
            log(f"uploading s3://{bucket}/{prefix}{path.name}")
            s3.upload_file(str(path), bucket, prefix + path.name)
        log(f"uploading s3://{bucket}/{prefix}{TEMPLATE}")
        s3.put_object(Bucket=bucket, Key=prefix + TEMPLATE, Body=template_text.encode())

        url = template_url(bucket, region, prefix + TEMPLATE)
        stack = deploy_stack(
            cfn, existing, name, url, parameters, args.version, args.timeout, args.review
        )
    except (DeployError, ClientError, BotoCoreError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr, flush=True)
        return 1
    if args.review:
        return 0

    log(f"{stack['StackName']} {stack['StackStatus']} (code s3://{bucket}/{prefix})")
    outputs = sorted(stack.get("Outputs") or [], key=lambda o: o["OutputKey"])
    if not outputs:
        log("no outputs reported")
    for output in outputs:
        log(f"  {output['OutputKey']} = {output['OutputValue']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
