"""RealVault: a real `vault server -dev` for one test, driven over its HTTP API.

It offers the same setup and observation helpers as the stand-in (tests/vaultserver), so a
test reads the same whichever server it stands on, but every answer comes from HashiCorp
Vault itself:

- `vault server -dev` on a free loopback port, a random root token, `secret/` KV v2 (the
  dev default) and `kv/` KV v1, a file audit device with raw entries in the test's folder;
- `requests` / `count(path)` read that audit log (what Vault itself says it served), and
  every token, secret_id and password Vault handed out is seeded into the suite's secrecy
  check when the server closes;
- faults a real server cannot give on demand come from `proxy()` (tests/realservers/
  fault_proxy.py): a fault proxy in front of this server, with its own address.

The setup helpers (enable_*, write_kv, set_policy, create_token, configure_database,
add_database_role, add_static_role, configure_aws, add_aws_role, engine("approle"|...,
auth=True).add_role) act as an operator with the root token would, through the API.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.realservers import binaries
from tests.realservers.audit import AuditLog
from tests.realservers.vault_engines import AppRole, Kubernetes
from tests.services.ports import LOOPBACK, Service, free_port, stop_process
from tests.vaultserver.faults import LoggedRequest

START_TIMEOUT = 30.0
BIND_ATTEMPTS = 5
# Vault's documented statements for the PostgreSQL plugin (its docs' dynamic role example).
CREATION = ("CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}'; "
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";")


class VaultAPIError(RuntimeError):
    """An operator call the test made was refused by Vault (status and Vault's errors)."""


class RealVault(Service):
    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """With ``tls`` (certificate, key), a second listener serves HTTPS on
        ``.https_addr`` with that certificate, beside the dev server's HTTP one."""
        self.root_token = "hvs-test-root-" + secrets.token_hex(12)
        self.host = LOOPBACK
        self.port = 0
        self.tls = tls
        self.https_port = 0
        self.unseal_key = ""
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()
        self._http.headers["X-Vault-Token"] = self.root_token
        self.audit: AuditLog | None = None
        self._closers: list[Callable[[], None]] = []
        self._helpers: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def addr(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_addr(self) -> str:
        return f"https://{self.host}:{self.https_port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._root is None else self._root / "vault.log"

    def start(self) -> None:
        if self._process is not None:
            return
        self._root = Path(tempfile.mkdtemp(prefix="entrypoint-vault-"))
        try:
            self._start_server()
            self._initial_setup()
        except BaseException:
            self.stop()
            raise

    def _start_server(self) -> None:
        assert self._root is not None
        vault = binaries.vault()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._root),
               "VAULT_LOG_LEVEL": "info"}
        for _ in range(BIND_ATTEMPTS):
            self.port = free_port()
            argv = [vault, "server", "-dev", f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address={LOOPBACK}:{self.port}", "-dev-no-store-token"]
            if self.tls is not None:
                # A dev server takes extra listeners from a config file.
                self.https_port = free_port()
                config = self._root / "tls.hcl"
                config.write_text(
                    f'listener "tcp" {{\n  address = "{LOOPBACK}:{self.https_port}"\n'
                    f'  tls_cert_file = "{self.tls[0]}"\n  tls_key_file = "{self.tls[1]}"\n}}\n')
                argv.append(f"-config={config}")
            log = (self._root / "vault.log").open("wb")
            self._process = subprocess.Popen(
                argv,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self._root, start_new_session=True,
            )
            log.close()
            if self._wait_ready():
                return
            stop_process(self._process)
            self._process = None
        raise RuntimeError(f"vault server -dev did not start; log:\n{self.log_text()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False  # most likely the port was taken between free_port and bind
            try:
                if requests.get(f"{self.addr}/v1/sys/health", timeout=2).status_code == 200:
                    match = re.search(r"Unseal Key: (\S+)", self.log_text())
                    if match:
                        self.unseal_key = match.group(1)
                        return True
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        return False

    def _initial_setup(self) -> None:
        assert self._root is not None
        audit_file = self._root / "audit.log"
        # Raw entries so that the secrecy check learns every secret Vault handed out and
        # requests can be told apart by accessor; the file lives and dies with the test.
        self.api("PUT", "sys/audit/file", {"type": "file", "options": {
            "file_path": str(audit_file), "log_raw": "true", "hmac_accessor": "false"}})
        # The operator (these helpers) works with a token of its own, so that what the
        # entrypoint does -- even with the root token -- is told apart in the audit log.
        operator = self.api("POST", "auth/token/create-orphan",
                            {"policies": ["root"], "display_name": "test-operator"})["auth"]
        self._http.headers["X-Vault-Token"] = operator["client_token"]
        self.audit = AuditLog(audit_file, ignore_accessor=operator["accessor"])
        self.enable_kv("kv", 1)
        self.audit.clear()

    def stop(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        self._helpers.clear()
        if self.audit is not None:
            self.audit.seed_secrets()
        process, self._process = self._process, None
        if process is not None:
            self._revoke_all()
            stop_process(process, signal.SIGTERM, timeout=15)
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    close = stop

    def _revoke_all(self) -> None:
        """Revoke every lease so that no database role outlives the test."""
        for prefix in ("database/",):
            with contextlib.suppress(requests.RequestException):
                self._http.put(f"{self.addr}/v1/sys/leases/revoke-prefix/{prefix}",
                               params={"sync": "true"}, timeout=30)

    def log_text(self) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")

    # -- the API, as the root operator ----------------------------------------------------

    def api(self, method: str, path: str, data: dict[str, Any] | None = None,
            token: str | None = None, **params: Any) -> dict[str, Any]:
        headers = {} if token is None else {"X-Vault-Token": token}
        answer = self._http.request(method, f"{self.addr}/v1/{path}", json=data,
                                    params=params or None, headers=headers, timeout=30)
        if answer.status_code >= 400:
            raise VaultAPIError(f"{method} {path}: {answer.status_code} {answer.text.strip()}")
        if answer.status_code == 204 or not answer.content:
            return {}
        result: dict[str, Any] = answer.json()
        return result

    def proxy(self) -> Any:
        """A fault proxy in front of this server (closed with it); use its `.addr`."""
        from tests.realservers.fault_proxy import FaultProxy

        proxy = FaultProxy(self)
        proxy.start()
        self.on_close(proxy.close)
        return proxy

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the server closes (helpers' own servers, proxies)."""
        self._closers.append(closer)

    # -- setup helpers --------------------------------------------------------------------

    def enable_kv(self, mount: str, version: int) -> None:
        self.api("POST", f"sys/mounts/{mount}",
                 {"type": "kv", "options": {"version": str(version)}})

    def enable_secrets(self, kind: str, path: str | None = None) -> None:
        self.api("POST", f"sys/mounts/{path or kind}", {"type": kind})

    def enable_auth(self, kind: str, path: str | None = None) -> None:
        self.api("POST", f"sys/auth/{path or kind}", {"type": kind})

    def mounts(self, auth: bool = False) -> dict[str, Any]:
        data = self.api("GET", "sys/auth" if auth else "sys/mounts")
        table: dict[str, Any] = data.get("data", data)
        return table

    def engine(self, mount: str, auth: bool = False) -> Any:
        """An operator's helper for an auth mount (approle, kubernetes) at `mount`."""
        found = self.mounts(auth).get(mount.strip("/") + "/")
        if found is None:
            raise KeyError(f"no {'auth ' if auth else ''}mount at {mount}")
        kinds: dict[str, Any] = {"approle": AppRole, "kubernetes": Kubernetes}
        if not auth or found["type"] not in kinds:
            raise KeyError(f"no helper for a {found['type']} mount")
        key = mount.strip("/")
        if key not in self._helpers:
            self._helpers[key] = kinds[found["type"]](self, key)
        return self._helpers[key]

    def _kv_version(self, mount: str) -> int:
        found = self.mounts().get(mount.strip("/") + "/") or {}
        return int((found.get("options") or {}).get("version") or 1)

    def write_kv(self, mount: str, path: str, data: dict[str, Any]) -> None:
        if self._kv_version(mount) == 2:
            self.api("POST", f"{mount}/data/{path}", {"data": data})
        else:
            self.api("POST", f"{mount}/{path}", data)

    def set_policy(self, name: str, rules: dict[str, list[str]]) -> None:
        """HCL from {glob: [capabilities]} (`*` prefix, `+` one segment, as Vault's)."""
        hcl = "\n".join(f'path "{glob}" {{ capabilities = {json.dumps(list(caps))} }}'
                        for glob, caps in rules.items())
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def create_token(self, policies: list[str], ttl: int, max_ttl: int | None = None,
                     renewable: bool = True, period: int | None = None,
                     token_type: str = "service", no_default_policy: bool = False,
                     role: str | None = None) -> str:
        """A token (a child of the operator's); with `role`, made through that token role,
        whose settings then win over these."""
        body: dict[str, Any] = {"policies": policies, "ttl": f"{ttl}s",
                                "renewable": renewable, "no_default_policy": no_default_policy}
        if role is None:
            body["type"] = token_type
        if max_ttl:
            body["explicit_max_ttl"] = f"{max_ttl}s"
        if period:
            body["period"] = f"{period}s"
        path = "auth/token/create" + (f"/{role}" if role else "")
        token: str = self.api("POST", path, body)["auth"]["client_token"]
        return token

    def add_token_role(self, name: str, **fields: Any) -> None:
        """A token role (auth/token/roles/NAME: allowed_policies, renewable, orphan,
        token_type, token_explicit_max_ttl, ...)."""
        self.api("POST", f"auth/token/roles/{name}", fields)

    def token_accessor(self, token: str) -> str:
        accessor: str = self.api("POST", "auth/token/lookup", {"token": token})["data"]["accessor"]
        return accessor

    def configure_database(self, postgres: Any, name: str = "pg", allowed_roles: str = "*",
                           mount: str = "database") -> None:
        if mount.strip("/") + "/" not in self.mounts():
            self.enable_secrets("database", mount)
        self.api("POST", f"{mount}/config/{name}", {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@{postgres.host}:"
                              f"{postgres.port}/postgres?sslmode=disable",
            "username": postgres.superuser, "password": postgres.superuser_password,
            "allowed_roles": allowed_roles,
        })

    def add_database_role(self, name: str, mount: str = "database", db_name: str = "pg",
                          default_ttl: int = 3600, max_ttl: int = 86400,
                          creation_statements: list[str] | None = None,
                          revocation_statements: list[str] | None = None,
                          renew_statements: list[str] | None = None) -> None:
        body: dict[str, Any] = {"db_name": db_name, "default_ttl": default_ttl,
                                "max_ttl": max_ttl,
                                "creation_statements": creation_statements or [CREATION]}
        if revocation_statements:
            body["revocation_statements"] = revocation_statements
        if renew_statements:
            body["renew_statements"] = renew_statements
        self.api("POST", f"{mount}/roles/{name}", body)

    def delete_database_role(self, name: str, mount: str = "database") -> None:
        self.api("DELETE", f"{mount}/roles/{name}")

    def add_static_role(self, name: str, username: str, rotation_period: int,
                        db_name: str = "pg", mount: str = "database") -> None:
        """A static role on an existing PostgreSQL user (Vault's floor is 5 s)."""
        self.api("POST", f"{mount}/static-roles/{name}", {
            "db_name": db_name, "username": username, "rotation_period": rotation_period})

    def configure_aws(self, moto: Any, header_value: str | None = None, mount: str = "aws",
                      **fields: Any) -> None:
        """auth/aws with STS and IAM at moto's server and the admin's keys for lookups."""
        if mount.strip("/") + "/" not in self.mounts(auth=True):
            self.enable_auth("aws", mount)
        config: dict[str, Any] = {
            "sts_endpoint": moto.endpoint_url, "iam_endpoint": moto.endpoint_url,
            "sts_region": "us-east-1",
            "access_key": moto.admin_access_key_id,
            "secret_key": moto.admin_secret_access_key, **fields}
        if header_value is not None:
            config["iam_server_id_header_value"] = header_value
        self.api("POST", f"auth/{mount}/config/client", config)

    def add_aws_role(self, name: str, bound_iam_principal_arn: str | list[str],
                     policies: list[str], mount: str = "aws", **fields: Any) -> None:
        arns = ([bound_iam_principal_arn] if isinstance(bound_iam_principal_arn, str)
                else bound_iam_principal_arn)
        self.api("POST", f"auth/{mount}/role/{name}", {
            "auth_type": "iam", "bound_iam_principal_arn": arns,
            "token_policies": policies, **fields})

    # -- operator actions -----------------------------------------------------------------

    def seal(self) -> None:
        self.api("PUT", "sys/seal")

    def unseal(self) -> None:
        self.api("PUT", "sys/unseal", {"key": self.unseal_key})

    def revoke_lease(self, lease_id: str) -> None:
        self.api("PUT", "sys/leases/revoke", {"lease_id": lease_id})

    def revoke_token(self, token: str | None = None, accessor: str | None = None) -> None:
        if token is not None:
            self.api("POST", "auth/token/revoke", {"token": token})
        elif accessor is not None:
            self.api("POST", "auth/token/revoke-accessor", {"accessor": accessor})

    def tokens_issued_by(self, path: str) -> list[str]:
        """Accessors of live tokens whose creation path is `path` (e.g. auth/approle/login)."""
        found = []
        keys = self.api("LIST", "auth/token/accessors").get("data", {}).get("keys", [])
        for accessor in keys:
            try:
                data = self.api("POST", "auth/token/lookup-accessor", {"accessor": accessor})
            except VaultAPIError:
                continue  # revoked between the list and the lookup
            if data["data"].get("path") == path:
                found.append(accessor)
        return found

    def leases(self, prefix: str = "") -> list[str]:
        """Secret lease ids under `prefix` (a path such as database/creds/app), as Vault
        lists them; tokens' own leases (auth/...) only when `prefix` asks for them."""
        found: list[str] = []
        self._list_leases(prefix.rstrip("/") + "/" if prefix else "", found)
        return sorted(i for i in found if prefix.startswith("auth/") or
                      not i.startswith("auth/"))

    def _list_leases(self, prefix: str, found: list[str]) -> None:
        try:
            keys = self.api("LIST", f"sys/leases/lookup/{prefix}")["data"]["keys"]
        except (VaultAPIError, KeyError):
            return
        for key in keys:
            if key.endswith("/"):
                self._list_leases(prefix + key, found)
            else:
                found.append(prefix + key)

    # -- observation: Vault's own audit log ------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        return [] if self.audit is None else self.audit.requests()

    def count(self, path: str, method: str | None = None) -> int:
        return sum(1 for r in self.requests
                   if r.path == path and (method is None or r.method == method))

    def clear_requests(self) -> None:
        if self.audit is not None:
            self.audit.clear()
