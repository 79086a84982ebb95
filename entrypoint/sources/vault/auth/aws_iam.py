"""AWS IAM: prove who we are with a signed ``sts:GetCallerIdentity`` that Vault replays.

Credentials come from botocore's standard chain (env keys, shared profile, the ECS
container credentials endpoint, web identity, instance metadata); botocore signs (SigV4).
Both happen in a short-lived helper process (:mod:`.aws_sign`) that hands back the signed
headers: the resident entrypoint never imports botocore (about 20 MB it would keep for one
signature per login). We never send the request to STS ourselves: Vault does, and STS
checks the signature.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from entrypoint.config.model import Config
from entrypoint.errors import AuthError, EntrypointError
from entrypoint.sources.vault.auth import LoginResult, aws_sign, refused, result_of
from entrypoint.sources.vault.auth.aws_sign import BODY, SERVER_ID_HEADER

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient

GLOBAL_ENDPOINT = "https://sts.amazonaws.com/"
GLOBAL_REGION = "us-east-1"
__all__ = ["BODY", "SERVER_ID_HEADER", "AwsIamLogin", "aws_credentials", "helper_sign",
           "login_payload", "signed_request", "sts_target"]
# What the helper may take from our environment: botocore's own settings and the few
# variables its chain reads (the shared files under HOME, a credential_process on PATH,
# proxies and CA bundles for the ECS endpoint and STS). Not VAULT_*, ENTRYPOINT_*, nor the
# app's references.
HELPER_ENV = frozenset({
    "HOME", "PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
})
HELPER_TIMEOUT = 60.0  # botocore's own timeouts end a slow chain well before this
# What the helper imports besides the standard library: botocore and what botocore imports
# (awscrt only if installed). The helper is given the folders these are found in, no other.
HELPER_PACKAGES = ("botocore", "jmespath", "dateutil", "six", "urllib3", "certifi", "awscrt")


def sts_target(region: str | None, endpoint: str | None) -> tuple[str, str]:
    """(URL, signing region). A region alone means its regional endpoint: signing for a
    region against the global host is what STS rejects (hvac#251)."""
    if endpoint:
        url = endpoint if "://" in endpoint else "https://" + endpoint
        if urlsplit(url).path in ("", None):
            url += "/"
        if region:
            return url, region
        match = re.match(r"sts[.-]([a-z0-9-]+)\.amazonaws\.com", urlsplit(url).hostname or "")
        return url, match.group(1) if match else GLOBAL_REGION
    if region and region != GLOBAL_REGION:
        return f"https://sts.{region}.amazonaws.com/", region
    return GLOBAL_ENDPOINT, GLOBAL_REGION


def signed_request(credentials: Any, url: str, region: str,
                   server_id: str | None) -> dict[str, str]:
    """Headers of a SigV4-signed GetCallerIdentity POST, in this process (botocore does
    the signing; imported here): the helper's function, kept for tests and tools."""
    return aws_sign.sign(credentials, url, region, server_id)


def login_payload(headers: dict[str, str], url: str, role: str | None) -> dict[str, str]:
    """The four base64 fields of ``auth/aws/login`` (reference §3.1)."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    payload = {
        "iam_http_request_method": "POST",
        "iam_request_url": b64(url),
        "iam_request_body": b64(BODY),
        "iam_request_headers": b64(json.dumps({k: [v] for k, v in headers.items()})),
    }
    if role:
        payload["role"] = role
    return payload


def aws_credentials() -> Any:
    """Frozen credentials from the standard chain, in this process (botocore imported
    here), or AuthError naming the chain: the helper's function, kept for tests and tools."""
    try:
        return aws_sign.credentials()
    except aws_sign.SigningError as exc:
        raise AuthError(exc.message, hint=exc.hint) from None


def helper_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The entrypoint's ``AWS_*`` and :data:`HELPER_ENV`, without the app's references:
    ``AWS_ACCESS_KEY_ID=vault:aws/creds/app#access_key`` is for the app, and botocore
    would sign with the literal text before it tried the task role."""
    from entrypoint.plan import refs

    def reference(value: str) -> bool:
        try:
            return bool(refs.references(refs.parse(value)))
        except EntrypointError:
            return True  # not a credential either: a malformed reference

    return {k: v for k, v in environ.items()
            if (k.startswith("AWS_") or k in HELPER_ENV) and not reference(v)}


def helper_path(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The folders the helper imports botocore and its dependencies from, and no other.

    Our ``sys.path`` is not for a process that runs as root: it holds PYTHONPATH and, first,
    the script's folder or (``python -m``, ``-c``) the working folder, which the app may be
    able to write (a ``botocore/`` planted there ran in the helper, as root). They are
    searched here without importing anything, in the folder the entrypoint package itself
    was loaded from (unless that is the working folder), then our ``sys.path`` less its
    first entry, the working folder and the PYTHONPATH entries."""
    from importlib.machinery import PathFinder

    import entrypoint

    def real(entry: str) -> str:
        return os.path.realpath(entry or ".")

    cwd = real(os.getcwd())
    unsafe = {cwd} | {real(e) for e in environ.get("PYTHONPATH", "").split(os.pathsep) if e}
    own = os.path.dirname(os.path.dirname(os.path.abspath(entrypoint.__file__ or ".")))
    # Without -P (safe_path), sys.path[0] is the script's folder, or the working folder.
    entries = sys.path if sys.flags.safe_path else sys.path[1:]
    search = ([own] if real(own) != cwd else []) + [
        e for e in entries if e and real(e) not in unsafe]
    found: list[str] = []
    for name in HELPER_PACKAGES:
        spec = PathFinder.find_spec(name, search)
        if spec is None:
            continue
        if spec.submodule_search_locations:  # a package: the folder that holds it
            where = os.path.dirname(next(iter(spec.submodule_search_locations)))
        else:
            where = os.path.dirname(spec.origin or "")
        if where and where not in found:
            found.append(where)
    return found


def helper_sign(url: str, region: str, server_id: str | None,
                environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The signed headers, from a helper process that reads the credentials itself.

    ``python -I -S aws_sign.py`` on our own interpreter, as our own user (never the app's),
    without a shell, with descriptors 0-2 only (pipes to us) and the environment of
    :data:`HELPER_ENV`. What to sign goes on stdin; the answer comes back on stdout and is
    never logged. The answer alone counts, not the exit status: the supervisor's loop may
    reap the helper before we do."""
    import subprocess

    from entrypoint.process import signals

    asked = json.dumps({"url": url, "region": region, "server_id": server_id,
                        "path": helper_path()})
    try:
        # The helper starts with a clear signal mask, not this worker thread's.
        with signals.unblocked():
            proc = subprocess.Popen([sys.executable, "-I", "-S", aws_sign.__file__],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=helper_env(environ),
                                    close_fds=True, restore_signals=True)
    except OSError as exc:
        raise AuthError(f"aws-iam: the signing helper could not start: {exc.strerror}",
                        hint=f"it runs {sys.executable}") from None
    try:
        out, err = proc.communicate(asked.encode(), timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AuthError(f"aws-iam: the signing helper did not answer within "
                        f"{HELPER_TIMEOUT:g}s", hint="the AWS credentials chain (ECS "
                        "endpoint, instance metadata, credential_process) is not "
                        "answering") from None
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("headers"), dict):
        return {str(k): str(v) for k, v in answer["headers"].items()}
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise AuthError(str(error.get("message")), hint=error.get("hint") or None)
    lines = err.decode("utf-8", "replace").strip().splitlines()
    raise AuthError(f"aws-iam: the signing helper failed (exit status {proc.returncode}): "
                    f"{(lines[-1] if lines else 'no answer')[:300]}")


@dataclass(frozen=True)
class _Signed:
    """What of the credentials a signed request shows (the secret key never is)."""

    access_key: str | None
    token: str | None
    secret_key: str | None = None


def _shown(headers: Mapping[str, str]) -> _Signed:
    credential = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization", ""))
    return _Signed(access_key=credential.group(1) if credential else None,
                   token=headers.get("X-Amz-Security-Token"))


def _hide(text: str, credentials: Any) -> str:
    """Vault echoes STS's error body; make sure no part of the credentials rides along."""
    for value in (credentials.secret_key, credentials.token, credentials.access_key):
        if value:
            text = text.replace(value, "<redacted>")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    if code:
        # The XML body can be long (canonical strings): keep what a human needs.
        head = text.split("<", 1)[0].rstrip(": ")
        text = f"{head}: {code.group(1)}" + (f": {message.group(1)}" if message else "")
    return text


@dataclass
class AwsIamLogin:
    mount: str = "aws"
    role: str | None = None
    server_id: str | None = None
    region: str | None = None
    endpoint: str | None = None
    name: str = "aws-iam"

    @classmethod
    def from_config(cls, config: Config, mount: str) -> AwsIamLogin:
        return cls(mount=mount, role=config.vault_role, server_id=config.vault_aws_header,
                   region=config.vault_aws_region, endpoint=config.vault_sts_endpoint)

    def login(self, client: VaultClient) -> LoginResult:
        from entrypoint.sources.vault import answers as hx

        url, region = sts_target(self.region, self.endpoint)
        headers = helper_sign(url, region, self.server_id)
        payload = login_payload(headers, url, self.role)
        try:
            response = client.call(f"login at auth/{self.mount}/login", lambda: (
                client.anonymous.post(f"/v1/auth/{self.mount}/login", payload)))
        except hx.VaultError as exc:
            error = refused(self.describe(), exc, hint=self._hint(exc))
            error.message = _hide(error.message, _shown(headers))
            error.args = (error.message,)
            raise error from None
        return result_of(response, self.describe())

    def _hint(self, exc: BaseException) -> str | None:
        text = str(exc)
        if SERVER_ID_HEADER in text:
            return ("set ENTRYPOINT_VAULT_AWS_HEADER to the iam_server_id_header_value of "
                    f"auth/{self.mount}/config/client")
        if "does not belong to the role" in text:
            return (f"the AWS principal is not bound to Vault role {self.role or '(default)'}; "
                    "check bound_iam_principal_arn")
        if "SignatureDoesNotMatch" in text or "scoped to a valid region" in text:
            return ("STS rejected the signature: the AWS credentials are not valid, or "
                    "ENTRYPOINT_VAULT_AWS_REGION / ENTRYPOINT_VAULT_STS_ENDPOINT do not match "
                    "the sts_endpoint Vault uses")
        if "not found" in text and "role" in text:
            return "check ENTRYPOINT_VAULT_ROLE"
        return None

    def describe(self) -> str:
        role = f" role {self.role}" if self.role else ""
        return f"aws-iam (auth/{self.mount}){role}"
