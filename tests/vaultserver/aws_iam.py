"""AWS auth, IAM method, done as Vault does it (reference section 3): the mount's
config/client, its roles and the login pipeline (the STS side is in aws_sts.py).

IAM lookups (unique IDs at role write, full ARNs for wildcard binds) use `iam_endpoint`
with the config/client keys, through botocore.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.vaultserver import tokens
from tests.vaultserver.aws_sts import (
    DEFAULT_ALLOWED_STS_HEADERS,
    DEFAULT_STS_ENDPOINT,
    SERVER_ID_HEADER,
    IamEntity,
    call_sts,
    canonical_header,
    check_url,
    parse_headers,
    parse_iam_arn,
    server_id_problem,
)
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

CONFIG_FIELDS = ("access_key", "endpoint", "iam_endpoint", "sts_endpoint", "sts_region",
                 "iam_server_id_header_value")


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
        role: dict[str, Any] = dict(old) if old else {
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
        check_url(method, url.query)
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
        headers = parse_headers(data["iam_request_headers"])
        with self.state.lock:
            config = dict(self.config) if self.config is not None else None
        if config is not None:
            if config.get("iam_server_id_header_value"):
                reason = server_id_problem(headers, config["iam_server_id_header_value"],
                                           method, url.query)
                if reason:
                    raise bad_request(f"error validating {SERVER_ID_HEADER} header: {reason}")
            # The allow-list covers headers, and query parameters of a GET.
            query_names = [k for k, _ in parse_qsl(url.query)] if method == "GET" else []
            for name in [*headers, *query_names]:
                if name.startswith("X-Amz-") and name not in DEFAULT_ALLOWED_STS_HEADERS and \
                        name not in config["allowed_sts_header_values"]:
                    raise bad_request(f"invalid request header: {name}")
        endpoint = (config or {}).get("sts_endpoint") or DEFAULT_STS_ENDPOINT
        if config is not None and config["use_sts_region_from_client"]:
            authorization = ",".join(headers.get("Authorization", []))
            if not re.search(r"Credential=[^/,]+/[^/,]+/[^/,]+/", authorization):
                raise bad_request("region missing from Authorization header")
            # Vault would now call sts.<region>.amazonaws.com; a test server keeps sts_endpoint.
        retries = (config or {}).get("max_retries", -1)
        arn, user_id = call_sts(endpoint, method, url, body, headers,
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
