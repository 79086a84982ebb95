"""The STS side of AWS IAM login: the request checks, the forward to STS, the ARN.

Vault never checks a SigV4 signature itself: it forwards the client's signed
GetCallerIdentity request to the STS endpoint with the Host header of `iam_request_url`
(the host is signed) and trusts the answer (path_login.go, reference section 3.1).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.vaultserver.wire import bad_request

SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"
DEFAULT_STS_ENDPOINT = "https://sts.amazonaws.com"
DEFAULT_ALLOWED_STS_HEADERS = [
    "X-Amz-Algorithm", "X-Amz-Content-Sha256", "X-Amz-Credential", "X-Amz-Date",
    "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-User-Agent",
]
RETRY_WAIT = 0.1  # retryablehttp waits 1s+; the stand-in keeps tests fast


def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass
class IamEntity:
    partition: str
    account: str
    type: str
    path: str
    friendly_name: str
    session: str = ""

    def canonical_arn(self) -> str:
        kind = "role" if self.type == "assumed-role" else self.type
        return f"arn:{self.partition}:iam::{self.account}:{kind}/{self.friendly_name}"


def parse_iam_arn(arn: str) -> IamEntity:
    """path_login.go parseIamArn; ValueError with Vault's reason."""
    full = arn.split(":")
    if len(full) != 6:
        raise ValueError(f"unrecognized arn: contains {len(full)} colon-separated parts, "
                         "expected 6")
    if full[0] != "arn":
        raise ValueError('unrecognized arn: does not begin with "arn:"')
    if full[2] not in ("iam", "sts"):
        raise ValueError(f"unrecognized service: {full[2]}, not one of iam or sts")
    parts = full[5].split("/")
    if len(parts) < 2:
        raise ValueError(f'unrecognized arn: "{full[5]}" contains fewer than 2 slash-separated '
                         "parts")
    entity = IamEntity(full[1], full[4], parts[0], "/".join(parts[1:-1]), parts[-1])
    if entity.type == "assumed-role":
        if len(parts) < 3:
            raise ValueError(f'unrecognized arn: "{full[5]}" contains fewer than 3 '
                             "slash-separated parts")
        entity.path, entity.friendly_name, entity.session = "", parts[1], parts[2]
    elif entity.type not in ("user", "role", "instance-profile"):
        raise ValueError(f'unrecognized principal type: "{entity.type}"')
    return entity


def check_url(method: str, query: str) -> None:
    """validateLoginIamRequestUrl."""
    if method == "POST":
        if query:
            raise bad_request("invalid request")
        return
    actions = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "Action"]
    if not actions:
        raise bad_request("no action found in request")
    if len(actions) > 1:
        raise bad_request("found multiple actions")
    if actions[0] != "GetCallerIdentity":
        raise bad_request(f"unexpected action parameter, {actions[0]}")


def parse_headers(raw: Any) -> dict[str, list[str]]:
    """TypeHeader: base64 JSON or a JSON object; values a string or a list."""
    if isinstance(raw, str):
        try:
            text = base64.b64decode(raw, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            text = raw
        try:
            raw = json.loads(text)
        except ValueError:
            raise bad_request("error parsing iam_request_headers") from None
    if not isinstance(raw, dict):
        raise bad_request("error parsing iam_request_headers")
    headers: dict[str, list[str]] = {}
    for name, value in raw.items():
        values = value if isinstance(value, list) else [value]
        headers.setdefault(canonical_header(name), []).extend(str(v) for v in values)
    return headers


def server_id_problem(headers: dict[str, list[str]], wanted: str, method: str = "POST",
                      query: str = "") -> str:
    """validateVaultHeaderValue; "" when the header is right and signed."""
    provided = next((",".join(v) for k, v in headers.items()
                     if k.lower() == SERVER_ID_HEADER.lower()), "")
    if not provided:
        return f'missing header "{SERVER_ID_HEADER}"'
    if provided != wanted:
        return f'expected "{wanted}" but got "{provided}"'
    if method == "GET":
        # A presigned GET names its signed headers in the X-Amz-SignedHeaders parameter.
        signed = dict(parse_qsl(query, keep_blank_values=True)).get("X-Amz-SignedHeaders", "")
        return "" if SERVER_ID_HEADER.lower() in signed.split(";") else \
            "vault header wasn't signed"
    authorization = headers.get("Authorization")
    if authorization is None:
        return "missing Authorization header"
    match = re.match(r".*SignedHeaders=([^,]+)", ",".join(authorization), re.S)
    if match is None:
        return "vault header wasn't signed"
    if SERVER_ID_HEADER.lower() not in match.group(1).split(";"):
        return "vault header wasn't signed"
    return ""


def call_sts(endpoint: str, method: str, url: Any, body: str,
             headers: dict[str, list[str]], retries: int) -> tuple[str, str]:
    """Forward the signed request; (Arn, UserId) of GetCallerIdentity."""
    target = urlsplit(endpoint.rstrip("/"))
    path = (target.path or "") + (url.path or "/") + (f"?{url.query}" if url.query else "")
    payload = body.encode()
    for attempt in range(retries + 1):
        conn_class = (http.client.HTTPSConnection if target.scheme == "https"
                      else http.client.HTTPConnection)
        conn = conn_class(target.netloc, timeout=15)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", url.netloc)  # signed: the host of iam_request_url
            for name, values in headers.items():
                if name not in ("Host", "Content-Length"):
                    for value in values:
                        conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            reply = conn.getresponse()
            status, text = reply.status, reply.read().decode(errors="replace")
            content_type = reply.getheader("Content-Type", "")
        except OSError as exc:
            if attempt < retries:
                time.sleep(RETRY_WAIT)
                continue
            raise bad_request(f"error making upstream request: error making request: {exc}") \
                from None
        finally:
            conn.close()
        if status >= 500 and attempt < retries:
            time.sleep(RETRY_WAIT)
            continue
        break
    if status != 200:
        raise bad_request(f"error making upstream request: received error code {status} "
                          f"from STS: {text}")
    stripped = text.strip()
    if content_type != "text/xml" or not stripped.startswith(
            ("<GetCallerIdentityResponse", "<?xml")):
        raise bad_request("error making upstream request: body of GetCallerIdentity is invalid")
    try:
        root = ET.fromstring(stripped)
    except ET.ParseError:
        raise bad_request("error making upstream request: error parsing STS response") \
            from None
    found = {el.tag.split("}")[-1]: (el.text or "") for el in root.iter()}
    return found.get("Arn", ""), found.get("UserId", "")
