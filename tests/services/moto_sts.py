"""moto's server as a stand-in for AWS STS and IAM, with signature checking switched on.

The server runs in its own process: moto keeps its switches and its fake AWS accounts in
module globals, and tests elsewhere may use moto in-process (`mock_aws`) with other
settings. It starts with INITIAL_NO_AUTH_ACTION_COUNT=0, which makes moto verify the SigV4
signature of every request against the secret of the IAM access key it names (and apply
the user's IAM policies). tests/services/moto_main.py adds the region check moto lacks.

With checking on from the first request, somebody must be able to create the first IAM
user. start() does it through moto's own control endpoint (/moto-api/reset-auth): it
lifts checking, creates an admin user with an access key, and puts checking back, all
before anybody else knows the URL. create_iam_user() then signs with the admin's keys.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from tests.services.ports import LOOPBACK, Service, free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BIND_ATTEMPTS = 5
ADMIN_USER = "moto-admin"
# Global services are signed for us-east-1 whatever region the endpoint stands for.
GLOBAL_SERVICE_REGIONS = {"iam": "us-east-1"}
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
ALLOW_WHOAMI = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
}


class MotoServerError(RuntimeError):
    """The moto server could not be started."""


class MotoServer(Service):
    """A moto server process on a free loopback port; context manager or start()/stop()."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region: str = region
        self.host: str = LOOPBACK
        self.port: int = 0
        self.endpoint_url: str = ""
        self.admin_access_key_id: str = ""
        self.admin_secret_access_key: str = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        fd, log_path = tempfile.mkstemp(prefix="entrypoint-moto-", suffix=".log")
        os.close(fd)
        self._log_path = Path(log_path)
        try:
            self._spawn()
            self._bootstrap_admin()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process, signal.SIGTERM, STOP_TIMEOUT)
        log_path, self._log_path = self._log_path, None
        if log_path is not None:
            log_path.unlink(missing_ok=True)

    def client(
        self,
        service: str,
        access_key_id: str,
        secret_access_key: str,
        region: str | None = None,
        session_token: str | None = None,
    ) -> Any:
        """A botocore client for this server signing with the given keys (and region)."""
        session = botocore.session.Session()
        return session.create_client(
            service,
            region_name=region or GLOBAL_SERVICE_REGIONS.get(service, self.region),
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            # A refused signature is the answer under test, not a blip to retry.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def admin_client(self, service: str) -> Any:
        return self.client(service, self.admin_access_key_id, self.admin_secret_access_key)

    @property
    def log_text(self) -> str:
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""


    # -- internals -------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self._log_path is not None
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "MOTO_", "TEST_SERVER_MODE"))
        }
        env.update(INITIAL_NO_AUTH_ACTION_COUNT="0", MOTO_SIGNING_REGION=self.region)
        for _ in range(BIND_ATTEMPTS):
            self.port = free_port()
            self.endpoint_url = f"http://{self.host}:{self.port}"
            with open(self._log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.services.moto_main",
                        "-H",
                        self.host,
                        "-p",
                        str(self.port),
                    ],
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready():
                return
            self._process = None
            if "already in use" not in self.log_text:
                break
        raise MotoServerError(f"moto server did not start; its output:\n{self.log_text}")

    def _wait_ready(self) -> bool:
        """True once the server answers HTTP; False if the process died first."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                # Any HTTP answer will do: this endpoint says 400 to a GET, changing nothing.
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/reset-auth", timeout=2)
                return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.05)
        raise MotoServerError(f"moto server not ready after {START_TIMEOUT}s:\n{self.log_text}")

    def _set_no_auth_count(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=count.encode(),
            # urllib's default form type makes the server parse the body away.
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)

    def _bootstrap_admin(self) -> None:
        self._set_no_auth_count("inf")
        try:
            # Keys are not checked while the count is infinite; these are placeholders.
            iam = self.client("iam", "AKIABOOTSTRAP", "bootstrap")
            iam.create_user(UserName=ADMIN_USER)
            iam.put_user_policy(
                UserName=ADMIN_USER, PolicyName="admin", PolicyDocument=json.dumps(ALLOW_ALL)
            )
            key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        finally:
            self._set_no_auth_count("0")
        self.admin_access_key_id = key["AccessKeyId"]
        self.admin_secret_access_key = key["SecretAccessKey"]


def create_iam_user(server: MotoServer, user_name: str) -> tuple[str, str, str]:
    """A new IAM user with an access key: (access_key_id, secret_access_key, arn)."""
    iam = server.admin_client("iam")
    arn: str = iam.create_user(UserName=user_name)["User"]["Arn"]
    # moto always lets GetCallerIdentity through; the policy is there so that the user
    # would also pass on a stricter implementation.
    iam.put_user_policy(
        UserName=user_name, PolicyName="whoami", PolicyDocument=json.dumps(ALLOW_WHOAMI)
    )
    key = iam.create_access_key(UserName=user_name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"], arn


def assume_new_role(
    server: MotoServer, role_name: str, session_name: str = "task"
) -> dict[str, Any]:
    """Create an IAM role and assume it as the admin, as ECS does for a task role.

    Returns STS's Credentials (AccessKeyId "ASIA...", SecretAccessKey, SessionToken,
    Expiration) plus "Arn" (the assumed-role ARN GetCallerIdentity answers with) and
    "RoleArn" (the IAM role's). moto checks the session token of such keys on every
    request, so a client that forgets to send it is refused, as on AWS.
    """
    iam = server.admin_client("iam")
    admin_arn = iam.get_user(UserName=ADMIN_USER)["User"]["Arn"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com", "AWS": admin_arn},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn: str = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    iam.put_role_policy(
        RoleName=role_name, PolicyName="whoami", PolicyDocument=json.dumps(ALLOW_WHOAMI)
    )
    assumed = server.admin_client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)
    return {
        **assumed["Credentials"],
        "Arn": assumed["AssumedRoleUser"]["Arn"],
        "RoleArn": role_arn,
    }


def unique_user_name(prefix: str = "user") -> str:
    """An IAM user name not used before in this (session-long) server."""
    return f"{prefix}-{secrets.token_hex(4)}"
