"""AWS IAM: prove who we are with a signed ``sts:GetCallerIdentity`` that Vault replays.

Credentials come from botocore's standard chain (env keys, shared profile, the ECS
container credentials endpoint, web identity, instance metadata); botocore signs (SigV4).
We never send the request to STS ourselves: Vault does, and STS checks the signature.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from entrypoint.config.model import Config
from entrypoint.errors import AuthError
from entrypoint.sources.vault.auth import LoginResult, refused, result_of

if TYPE_CHECKING:
    from entrypoint.sources.vault.client import VaultClient

GLOBAL_ENDPOINT = "https://sts.amazonaws.com/"
GLOBAL_REGION = "us-east-1"
BODY = "Action=GetCallerIdentity&Version=2011-06-15"
SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"


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
    """Frozen credentials from the standard chain, or AuthError naming the chain."""
    import botocore.exceptions
    import botocore.session

    try:
        credentials = botocore.session.get_session().get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except botocore.exceptions.BotoCoreError as exc:
        # botocore's messages name the profile or endpoint at fault, never a secret.
        raise AuthError(f"aws-iam: AWS credentials could not be obtained: {exc}") from None
    if frozen is None or not frozen.access_key:
        raise AuthError("aws-iam: no AWS credentials found",
                        hint="looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared "
                             "profile, the ECS container credentials endpoint "
                             "(AWS_CONTAINER_CREDENTIALS_*), web identity and instance metadata")
    return frozen


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
        import hvac.exceptions as hx

        credentials = aws_credentials()
        url, region = sts_target(self.region, self.endpoint)
        payload = login_payload(signed_request(credentials, url, region, self.server_id),
                                url, self.role)
        try:
            response = client.call(f"login at auth/{self.mount}/login", lambda: (
                client.anonymous.adapter.post(f"/v1/auth/{self.mount}/login", json=payload)))
        except hx.VaultError as exc:
            error = refused(self.describe(), exc, hint=self._hint(exc))
            error.message = _hide(error.message, credentials)
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
