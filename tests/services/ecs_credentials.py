"""A stand-in for the ECS container-credentials endpoint (and EKS Pod Identity's agent).

The AWS SDKs fetch a task's credentials with a GET of AWS_CONTAINER_CREDENTIALS_FULL_URI,
sending AWS_CONTAINER_AUTHORIZATION_TOKEN (or the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
names) as the Authorization header, and accept http only for loopback addresses and the
link-local addresses of ECS and EKS. This server listens on 127.0.0.1 and hands out the keys
that exist in the moto server, so that what botocore signs with them really passes moto's
signature check.

Like ECS, it normally hands out a task role's temporary credentials (task_role_credentials:
an "ASIA" key and its session token; moto refuses the key without the token, and refuses a
session token sent with a long-term key). iam_user_credentials gives an IAM user's
long-term keys with an empty Token instead, for tests that want a user's ARN.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.services.moto_sts import (
    MotoServer,
    assume_new_role,
    create_iam_user,
    unique_user_name,
)
from tests.services.ports import LOOPBACK, Service


@dataclass
class CredentialsRequest:
    """One request the endpoint received, for assertions."""

    path: str
    authorization: str | None
    status: int


@dataclass
class EcsCredentials:
    """What the endpoint hands out."""

    access_key_id: str
    secret_access_key: str
    token: str
    expiration: datetime
    # What sts:GetCallerIdentity answers for these keys.
    arn: str
    # The IAM role's ARN for task-role credentials (what Vault roles usually bind to).
    role_arn: str | None = None

    def document(self) -> dict[str, str]:
        # The shape the ECS agent sends.
        document = {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.token,
            "Expiration": self.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.role_arn is not None:
            document["RoleArn"] = self.role_arn
        return document


@dataclass
class _State:
    credentials: EcsCredentials
    auth_token: str | None
    failures_left: int = 0
    failure_status: int = 500
    log: list[CredentialsRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class EcsCredentialsServer(Service):
    """The endpoint on a loopback port; context manager or start()/stop()."""

    def __init__(self, credentials: EcsCredentials, auth_token: str | None = None) -> None:
        self._state = _State(credentials=credentials, auth_token=auth_token)
        # A path like the agent's, so that a client using the wrong one gets a 404.
        self.path: str = f"/v2/credentials/{secrets.token_hex(8)}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read and control -------------------------------------------------------

    @property
    def url(self) -> str:
        """The value for AWS_CONTAINER_CREDENTIALS_FULL_URI."""
        if self._server is None:
            raise RuntimeError("the ECS credentials endpoint is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}{self.path}"

    @property
    def credentials(self) -> EcsCredentials:
        with self._state.lock:
            return self._state.credentials

    @property
    def arn(self) -> str:
        return self.credentials.arn

    @property
    def role_arn(self) -> str | None:
        return self.credentials.role_arn

    @property
    def auth_token(self) -> str | None:
        return self._state.auth_token

    def env(self) -> dict[str, str]:
        """The environment a container would get to find this endpoint."""
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url}
        if self._state.auth_token is not None:
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self._state.auth_token
        return env

    def set_credentials(self, credentials: EcsCredentials) -> None:
        """Hand out other credentials from now on (a rotation of the task role's keys)."""
        with self._state.lock:
            self._state.credentials = credentials

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status` instead of credentials."""
        with self._state.lock:
            self._state.failures_left = count
            self._state.failure_status = status

    @property
    def requests(self) -> list[CredentialsRequest]:
        with self._state.lock:
            return list(self._state.log)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        # Port 0 bound in-process: the kernel picks a free port and nobody can race us.
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _handler_for(self._state, self.path))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits for the loop's next poll: keep teardown short.
            kwargs={"poll_interval": 0.05},
            name="ecs-credentials",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None



def task_role_credentials(server: MotoServer, role_name: str | None = None) -> EcsCredentials:
    """Temporary credentials of a new moto IAM role, as ECS gives a task (one hour)."""
    assumed = assume_new_role(server, role_name or unique_user_name("task-role"))
    return EcsCredentials(
        access_key_id=assumed["AccessKeyId"],
        secret_access_key=assumed["SecretAccessKey"],
        token=assumed["SessionToken"],
        expiration=assumed["Expiration"].astimezone(UTC),
        arn=assumed["Arn"],
        role_arn=assumed["RoleArn"],
    )


def iam_user_credentials(
    server: MotoServer, user_name: str | None = None, lifetime: timedelta = timedelta(hours=6)
) -> EcsCredentials:
    """Long-term keys of a new moto IAM user, with an empty Token.

    botocore sends no X-Amz-Security-Token for an empty token; a non-empty one would make
    moto refuse the (AKIA) key, as AWS does.
    """
    key_id, secret, arn = create_iam_user(server, user_name or unique_user_name("task"))
    return EcsCredentials(
        access_key_id=key_id,
        secret_access_key=secret,
        token="",
        expiration=datetime.now(UTC).replace(microsecond=0) + lifetime,
        arn=arn,
    )


def _handler_for(state: _State, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            with state.lock:
                status, body = self._answer(authorization)
                state.log.append(CredentialsRequest(self.path, authorization, status))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer(self, authorization: str | None) -> tuple[int, dict[str, str]]:
            if self.path != path:
                return HTTPStatus.NOT_FOUND, {"message": "not found"}
            if state.auth_token is not None and authorization != state.auth_token:
                return HTTPStatus.UNAUTHORIZED, {"message": "invalid authorization token"}
            if state.failures_left > 0:
                state.failures_left -= 1
                return state.failure_status, {"message": "injected failure"}
            return HTTPStatus.OK, state.credentials.document()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log above is for tests; stderr stays quiet

    return Handler
