"""AWS auth, IAM method, done as Vault does it (reference section 3).

The login never checks a signature itself: it forwards the client's signed
GetCallerIdentity request to `sts_endpoint` with the Host header of `iam_request_url`
(the host is signed) and trusts STS's answer, here moto with signature checking on.
IAM lookups (unique IDs at role write, full ARNs for wildcard binds) use `iam_endpoint`
with the config/client keys, through botocore.
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

from tests.vaultserver import tokens
from tests.vaultserver.state import Mount, State, Token
from tests.vaultserver.wire import (
    Request,
    Response,
    VaultError,
    as_bool,
    as_list,
    bad_request,
    new_uuid,
    no_content,
    ok,
    parse_duration,
)

SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"
DEFAULT_STS_ENDPOINT = "https://sts.amazonaws.com"
DEFAULT_ALLOWED_STS_HEADERS = [
    "X-Amz-Algorithm", "X-Amz-Content-Sha256", "X-Amz-Credential", "X-Amz-Date",
    "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-User-Agent",
]
RETRY_WAIT = 0.1  # retryablehttp waits 1s+; the stand-in keeps tests fast
CONFIG_FIELDS = ("access_key", "endpoint", "iam_endpoint", "sts_endpoint", "sts_region",
                 "iam_server_id_header_value")


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


def _b64(data: dict[str, Any], field: str) -> str:
    try:
        return base64.b64decode(str(data[field]), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise bad_request(f"failed to base64 decode {field}") from None


def _setup_request(data: dict[str, Any]) -> Request:
    from email.message import Message

    return Request("POST", "update", "", data, Message(), None)


class AwsAuth:
    def __init__(self, state: State, mount: Mount) -> None:
        self.state = state
        self.mount = mount
        self.config: dict[str, Any] | None = None
        self.roles: dict[str, dict[str, Any]] = {}

    # -- helpers for tests -----------------------------------------------------------------

    def configure(self, **fields: Any) -> None:
        """What POST auth/aws/config/client does with these fields."""
        self._config(_setup_request(fields))

    def add_role(self, name: str, **fields: Any) -> None:
        """What POST auth/aws/role/<name> does (bound_iam_principal_arn, policies, ttl...)."""
        self._role(_setup_request(fields), name)

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, request: Request, rest: str) -> Response:
        op = request.operation
        if rest == "login" and op == "update":
            return self._login(request)
        if rest == "config/client":
            return self._config(request)
        if rest in ("role", "roles", "role/", "roles/") and op == "list":
            if not self.roles:
                raise VaultError(404)
            return ok({"keys": sorted(self.roles)})
        if rest.startswith("role/"):
            return self._role(request, rest[len("role/") :].strip("/"))
        raise VaultError(404, f'no handler for route "auth/{self.mount.path}{rest}". '
                         "route entry not found.")

    def _config(self, request: Request) -> Response:
        op = request.operation
        with self.state.lock:
            if op == "read":
                if self.config is None:
                    raise VaultError(404)
                shown = {key: self.config.get(key, "") for key in CONFIG_FIELDS}
                shown.update(use_sts_region_from_client=self.config["use_sts_region_from_client"],
                             max_retries=self.config["max_retries"],
                             allowed_sts_header_values=self.config["allowed_sts_header_values"],
                             role_arn="")
                return ok(shown)
            if op == "delete":
                self.config = None
                return no_content()
            config = dict(self.config or {key: "" for key in CONFIG_FIELDS})
            for key in (*CONFIG_FIELDS, "secret_key"):
                if key in request.data:
                    config[key] = str(request.data[key])
            config["use_sts_region_from_client"] = as_bool(
                request.data.get("use_sts_region_from_client"),
                default=bool(config.get("use_sts_region_from_client")))
            config["max_retries"] = int(request.data.get("max_retries",
                                                         config.get("max_retries", -1)))
            allowed = request.data.get("allowed_sts_header_values",
                                       config.get("allowed_sts_header_values"))
            config["allowed_sts_header_values"] = [canonical_header(h) for h in as_list(allowed)]
            self.config = config
            return no_content()

    def _role(self, request: Request, name: str) -> Response:
        key = name.lower()  # role names are case-insensitive
        op = request.operation
        with self.state.lock:
            role = self.roles.get(key)
            if op == "read":
                if role is None:
                    raise VaultError(404)
                return ok({k: v for k, v in role.items() if k != "full_arns"})
            if op == "delete":
                self.roles.pop(key, None)
                return no_content()
            return self._write_role(key, request.data, role)

    def _write_role(self, key: str, data: dict[str, Any], old: dict[str, Any] | None) -> Response:
        role = dict(old) if old else {
            "auth_type": "iam", "bound_iam_principal_arn": [], "bound_iam_principal_id": [],
            "resolve_aws_unique_ids": True, "role_id": new_uuid(), "token_policies": [],
            "token_ttl": 0, "token_max_ttl": 0, "token_period": 0, "inferred_entity_type": "",
        }
        if "auth_type" in data:
            if old is not None and data["auth_type"] != old["auth_type"]:
                raise bad_request("changing auth_type on a role is not allowed")
            role["auth_type"] = str(data["auth_type"])
        if "bound_iam_principal_arn" in data:
            role["bound_iam_principal_arn"] = as_list(data["bound_iam_principal_arn"])
        if "resolve_aws_unique_ids" in data:
            resolve = as_bool(data["resolve_aws_unique_ids"])
            if old is not None and old["resolve_aws_unique_ids"] and not resolve:
                raise bad_request(
                    "changing resolve_aws_unique_ids from true to false is not allowed")
            role["resolve_aws_unique_ids"] = resolve
        for field, legacy in (("token_policies", "policies"),):
            if field in data or legacy in data:
                role[field] = as_list(data.get(field, data.get(legacy)))
        for field, legacy in (("token_ttl", "ttl"), ("token_max_ttl", "max_ttl"),
                              ("token_period", "period")):
            if field in data or legacy in data:
                role[field] = parse_duration(data.get(field, data.get(legacy)), field)
        for field in data:
            if field.startswith("bound_") and field != "bound_iam_principal_arn":
                role[field] = as_list(data[field])  # EC2 bounds: kept, never checked here
        bounds = [k for k, v in role.items()
                  if k.startswith("bound_") and k != "bound_iam_principal_id" and v]
        if not bounds:
            raise bad_request("at least one bound parameter should be specified on the role")
        if role["token_max_ttl"] and role["token_ttl"] > role["token_max_ttl"]:
            raise bad_request("ttl should be shorter than max ttl")
        if role["resolve_aws_unique_ids"]:
            ids = []
            for arn in role["bound_iam_principal_arn"]:
                if arn.endswith("*"):
                    continue
                try:
                    ids.append(self._unique_id(arn))
                except Exception as exc:
                    raise bad_request(f'unable to resolve ARN "{arn}" to internal ID: {exc}') \
                        from exc
            role["bound_iam_principal_id"] = ids
        self.roles[key] = role
        return no_content()

    # -- IAM lookups -----------------------------------------------------------------------

    def _iam(self) -> Any:
        import botocore.session
        from botocore.config import Config

        config = self.config or {}
        return botocore.session.Session().create_client(
            "iam", region_name="us-east-1", endpoint_url=config.get("iam_endpoint") or None,
            aws_access_key_id=config.get("access_key") or None,
            aws_secret_access_key=config.get("secret_key") or None,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

    def _describe(self, entity: IamEntity) -> dict[str, Any]:
        iam = self._iam()
        if entity.type == "user":
            return iam.get_user(UserName=entity.friendly_name)["User"]  # type: ignore[no-any-return]
        if entity.type in ("role", "assumed-role"):
            return iam.get_role(RoleName=entity.friendly_name)["Role"]  # type: ignore[no-any-return]
        profile = iam.get_instance_profile(InstanceProfileName=entity.friendly_name)
        return profile["InstanceProfile"]  # type: ignore[no-any-return]

    def _unique_id(self, arn: str) -> str:
        described = self._describe(parse_iam_arn(arn))
        return str(described.get("UserId") or described.get("RoleId")
                   or described.get("InstanceProfileId"))

    # -- login -----------------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        data = request.data
        iam_fields = ("iam_http_request_method", "iam_request_url", "iam_request_headers")
        has_all = all(data.get(f) for f in iam_fields)
        has_some = any(data.get(f) for f in (*iam_fields, "iam_request_body"))
        has_ec2 = any(data.get(f) for f in ("identity", "pkcs7", "signature"))
        if has_ec2 and has_some:
            raise bad_request("supplied auth values for both ec2 and iam auth types")
        if has_some and not has_all:
            if not data.get("iam_http_request_method"):
                raise bad_request("missing iam_http_request_method")
            if not data.get("iam_request_url"):
                raise bad_request("missing iam_request_url")
            if not data.get("iam_request_headers"):
                raise bad_request("missing iam_request_headers")
        if not has_some:
            raise bad_request("didn't supply required authentication values")
        method = str(data["iam_http_request_method"])
        if method not in ("GET", "POST"):
            raise bad_request(
                "invalid iam_http_request_method; currently only 'GET' and 'POST' are supported")
        url = urlsplit(_b64(data, "iam_request_url"))
        if not url.scheme or not url.netloc:
            raise bad_request("error parsing iam_request_url")
        self._check_url(method, url.query)
        body = ""
        if method == "POST":
            if not data.get("iam_request_body"):
                raise bad_request("missing iam_request_body which is required for POST requests")
            body = _b64(data, "iam_request_body")
            pairs = parse_qsl(body, keep_blank_values=True)
            names = [name for name, _ in pairs]
            if (set(names) - {"Action", "Version"} or dict(pairs).get("Action")
                    != "GetCallerIdentity" or len(names) != len(set(names))):
                raise bad_request("iam request body is invalid")
        headers = self._headers(data["iam_request_headers"])
        with self.state.lock:
            config = dict(self.config) if self.config is not None else None
        if config is not None:
            if config.get("iam_server_id_header_value"):
                reason = self._server_id_problem(headers, config["iam_server_id_header_value"])
                if reason:
                    raise bad_request(f"error validating {SERVER_ID_HEADER} header: {reason}")
            for name in headers:
                if name.startswith("X-Amz-") and name not in DEFAULT_ALLOWED_STS_HEADERS and \
                        name not in config["allowed_sts_header_values"]:
                    raise bad_request(f"invalid request header: {name}")
        endpoint = (config or {}).get("sts_endpoint") or DEFAULT_STS_ENDPOINT
        retries = (config or {}).get("max_retries", -1)
        arn, user_id = self._call_sts(endpoint, method, url, body, headers,
                                      3 if retries < 0 else retries)
        try:
            entity = parse_iam_arn(arn)
        except ValueError as exc:
            raise bad_request(f'error parsing arn "{arn}": {exc}') from None
        role_name = str(data.get("role") or entity.friendly_name)
        with self.state.lock:
            role = self.roles.get(role_name.lower())
        if role is None:
            raise bad_request(f"entry for role {role_name} not found")
        if role["auth_type"] != "iam":
            raise bad_request(f"auth method iam not allowed for role {role_name}")
        unique_id = user_id.split(":")[0]
        if not self._bound(role, entity, arn, unique_id):
            raise bad_request(f'IAM Principal "{arn}" does not belong to the role "{role_name}"')
        display = entity.friendly_name + (f"/{entity.session}" if entity.session else "")

        def recheck(token: Token) -> None:
            current = self.roles.get(role_name.lower())
            if current is None or not self._bound(current, entity, arn, unique_id):
                raise bad_request(
                    f'role "{role_name}" no longer bound to ARN "{entity.canonical_arn()}"')

        token = tokens.new_token(
            self.state, role["token_policies"], ttl=role["token_ttl"],
            max_ttl=role["token_max_ttl"], period=role["token_period"],
            path=f"auth/{self.mount.path}login", display_name=f"aws-{display}",
            meta={"account_id": entity.account, "auth_type": "iam", "role_id": role["role_id"]},
            orphan=True, renew_check=recheck,
        )
        return ok(None, auth=tokens.auth_block(token))

    @staticmethod
    def _check_url(method: str, query: str) -> None:
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

    @staticmethod
    def _headers(raw: Any) -> dict[str, list[str]]:
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

    @staticmethod
    def _server_id_problem(headers: dict[str, list[str]], wanted: str) -> str:
        """validateVaultHeaderValue for POST; "" when the header is right and signed."""
        provided = next((",".join(v) for k, v in headers.items()
                         if k.lower() == SERVER_ID_HEADER.lower()), "")
        if not provided:
            return f'missing header "{SERVER_ID_HEADER}"'
        if provided != wanted:
            return f'expected "{wanted}" but got "{provided}"'
        authorization = headers.get("Authorization")
        if authorization is None:
            return "missing Authorization header"
        match = re.match(r".*SignedHeaders=([^,]+)", ",".join(authorization), re.S)
        if match is None:
            return "vault header wasn't signed"
        if SERVER_ID_HEADER.lower() not in match.group(1).split(";"):
            return "vault header wasn't signed"
        return ""

    def _call_sts(self, endpoint: str, method: str, url: Any, body: str,
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

    def _bound(self, role: dict[str, Any], entity: IamEntity, arn: str, unique_id: str) -> bool:
        """Step 12: unique ID, exact canonical ARN (no resolving), or wildcard on the full ARN."""
        binds: list[str] = role["bound_iam_principal_arn"]
        if not binds:
            return True
        if unique_id in role["bound_iam_principal_id"]:
            return True
        if not role["resolve_aws_unique_ids"] and entity.canonical_arn() in binds:
            return True
        try:
            full_arn = str(self._describe(entity)["Arn"])
        except Exception as exc:
            raise bad_request(f"error looking up full ARN of entity {entity}: {exc}") from None
        return any(b.endswith("*") and full_arn.startswith(b[:-1]) for b in binds)
