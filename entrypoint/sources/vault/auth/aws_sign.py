"""The SigV4 signature of the aws-iam login, made where botocore can be left behind.

Run as a short-lived helper process by :mod:`entrypoint.sources.vault.auth.aws_iam`
(``python -I <this file>``), so that the resident entrypoint never imports botocore (about
20 MB resident, for one signature per login). It reads what to sign as JSON on stdin
(``{"url", "region", "server_id", "path"}``, ``path`` being the folders the entrypoint
found botocore and its dependencies in, added after the standard library: never its whole
``sys.path``, whose working folder and PYTHONPATH the app may write), takes
credentials from botocore's standard chain itself (env keys, shared profile, the ECS
container credentials endpoint, web identity, instance metadata: the environment it is
given is the entrypoint's ``AWS_*`` and the few variables the chain reads), and answers
one JSON object on stdout, the pipe back to the entrypoint: ``{"headers": {...}}``, or
``{"error": {"message", "hint"}}``. Nothing is logged, and no credential is ever on a
command line.

Standard library only at the top: botocore is imported inside the functions, and the file
runs on its own, without the ``entrypoint`` package (so without its imports).
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

BODY = "Action=GetCallerIdentity&Version=2011-06-15"
SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"
NO_CREDENTIALS = "aws-iam: no AWS credentials found"
NO_CREDENTIALS_HINT = ("looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared "
                       "profile, the ECS container credentials endpoint "
                       "(AWS_CONTAINER_CREDENTIALS_*), web identity and instance metadata")


class SigningError(Exception):
    """Credentials could not be had; the message and hint are the user's (no secret)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def credentials() -> Any:
    """Frozen credentials from the standard chain, or SigningError naming the chain."""
    import botocore.exceptions
    import botocore.session

    try:
        found = botocore.session.get_session().get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except botocore.exceptions.BotoCoreError as exc:
        # botocore's messages name the profile or endpoint at fault, never a secret.
        raise SigningError(f"aws-iam: AWS credentials could not be obtained: {exc}") from None
    if frozen is None or not frozen.access_key:
        raise SigningError(NO_CREDENTIALS, NO_CREDENTIALS_HINT)
    return frozen


def sign(credentials: Any, url: str, region: str, server_id: str | None) -> dict[str, str]:
    """Headers of a SigV4-signed GetCallerIdentity POST (botocore does the signing)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
               "Host": urlsplit(url).netloc}
    if server_id:
        # Added before signing so that it is in SignedHeaders, as Vault requires.
        headers[SERVER_ID_HEADER] = server_id
    request = AWSRequest(method="POST", url=url, data=BODY, headers=headers)
    SigV4Auth(credentials, "sts", region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def main() -> int:
    """The helper: what to sign on stdin, one JSON answer on stdout; 0, or 1 if refused."""
    try:
        asked = json.loads(sys.stdin.read())
        # After the standard library (-I -S: nothing else), never in place of it.
        sys.path.extend(str(p) for p in asked.get("path") or ())
        headers = sign(credentials(), str(asked["url"]), str(asked["region"]),
                       asked.get("server_id") or None)
    except SigningError as exc:
        answer: dict[str, Any] = {"error": {"message": exc.message, "hint": exc.hint}}
        code = 1
    else:
        answer, code = {"headers": headers}, 0
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
