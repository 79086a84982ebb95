"""VaultTestServer: the object the `vault_server` fixture yields.

Defaults are those of `vault server -dev`: root token `root` (`.root_token`), `secret/` is
KV v2, `token/` is the only auth method; we also mount `kv/` as KV v1 so that both engines
are there without setup. `.addr` is http://127.0.0.1:<free port>.

Setup helpers (they act on the state directly, as an operator with the root token would):
  enable_kv(mount, version); write_kv(mount, path, data) (KV v2: a new version each call);
  enable_secrets(kind, path=None); enable_auth(kind, path=None); engine(mount, auth=False);
  set_policy(name, {glob: [capabilities]}) (trailing `*` = prefix, `+` = one segment,
  policy `root` allows all, every token also gets `default`);
  create_token(policies, ttl, max_ttl=None, renewable=True, period=None) -> token
  (a child of root; max_ttl is its explicit max TTL); token_accessor(token) -> accessor;
  configure_database(postgres, name="pg", allowed_roles="*", mount="database");
  add_database_role(name, db_name="pg", default_ttl=3600, max_ttl=86400,
  creation_statements=None, revocation_statements=None, renew_statements=None);
  add_static_role(name, username, rotation_period, db_name="pg") (sets the password now;
  Vault's 5 s minimum period is engine("database").min_rotation_period);
  configure_aws(moto, header_value=None, **config_client_fields) (STS and IAM at moto);
  add_aws_role(name, bound_iam_principal_arn, policies, **fields) (ttl, max_ttl, period,
  resolve_aws_unique_ids, auth_type...);
  AppRole: enable_auth("approle"); engine("approle", auth=True).add_role(name, policies,
  ttl=0, max_ttl=0, bind_secret_id=True) -> (role_id, secret_id);
  Kubernetes: enable_auth("kubernetes"); engine("kubernetes", auth=True).add_jwt(jwt,
  service_account_name, namespace) and .add_role(name, service_accounts, namespaces,
  policies, ttl=0).
Fault controls and observation:
  seal()/unseal(); set_health(standby=True, ...) (sys/health only);
  fail_next(n, status=500, message=None, path_prefix=None);
  rate_limit_next(n, retry_after=1.0, http_date=True, path_prefix=None) (429, Retry-After);
  set_delay(seconds, count=None, path_prefix=None); clear_faults();
  revoke_lease(lease_id) and revoke_token(token=None, accessor=None) behind the client's
  back (revocation statements run); expire_token(token) (the reaper revokes it and its
  leases); stop()/start()/restart() on the same port, state kept, open connections cut;
  requests (LoggedRequest: method, path without /v1/, status, accessor or None, timestamp,
  query); count(path, method=None); clear_requests(); leases(prefix="") -> lease ids.
The same controls exist over HTTP under /_test/ for a server in another process
(see control.py). close() stops and revokes every lease left.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from tests.vaultserver import leases, system, tokens, wrapping
from tests.vaultserver.faults import FaultControls, Faults
from tests.vaultserver.http import VaultHTTPServer
from tests.vaultserver.state import State
from tests.vaultserver.wire import VaultError

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
REAP_INTERVAL = 0.05


class VaultTestServer(FaultControls):
    def __init__(self, root_token: str = "root", port: int = 0, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = port
        self.root_token = root_token
        self.state = State(root_token)
        self.faults = Faults()
        self._httpd: VaultHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._stop_reaper = threading.Event()
        tokens.root_token(self.state, root_token)
        system.add_mount(self.state, self.state.auth_mounts, "token", "token", None)
        system.add_mount(self.state, self.state.mounts, "secret", "kv", {"version": "2"})
        system.add_mount(self.state, self.state.mounts, "kv", "kv", {"version": "1"})
        system.add_mount(self.state, self.state.mounts, "cubbyhole", "cubbyhole", None)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> None:
        """Listen (again) on the same port; the first start picks a free one."""
        if self._httpd is not None:
            return
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._httpd = VaultHTTPServer((self.host, self.port), self)
                break
            except OSError:
                # A restart right after stop may find the port in TIME_WAIT limbo briefly.
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = self._httpd.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"vault-test-server-{self.port}",
        )
        self._serve_thread.start()
        self._stop_reaper.clear()
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="vault-reaper")
        self._reaper.start()

    def stop(self) -> None:
        """Stop listening and cut open connections; memory (tokens, leases, KV) stays."""
        httpd, self._httpd = self._httpd, None
        self._stop_reaper.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.drop_connections()
        if self._serve_thread is not None:
            self._serve_thread.join(5)
        if self._reaper is not None:
            self._reaper.join(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and revoke what is left so no database role outlives the test."""
        self.stop()
        with self.state.lock:
            for lease_id in list(self.state.leases):
                try:
                    leases.revoke_lease(self.state, lease_id)
                except VaultError:
                    self.state.leases.pop(lease_id, None)
            for mount in self.state.mounts.values():
                closer = getattr(mount.engine, "close", None)
                if closer is not None:
                    closer()

    def __enter__(self) -> VaultTestServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reap(self) -> None:
        """Vault's expiration manager: revoke what has expired, run periodic jobs."""
        while not self._stop_reaper.wait(REAP_INTERVAL):
            now = time.time()
            try:
                leases.revoke_expired(self.state, now)
                tokens.revoke_expired(self.state, now)
                wrapping.expired(self.state, now)
                for job in list(self.state.periodic):
                    job(now)
            except Exception:  # keep reaping; a test sees the effect, not a thread death
                log.exception("vault test server reaper")

    # -- setup helpers ---------------------------------------------------------------------

    def enable_kv(self, mount: str, version: int) -> None:
        system.add_mount(self.state, self.state.mounts, mount, "kv", {"version": str(version)})

    def enable_secrets(self, kind: str, path: str | None = None) -> None:
        system.add_mount(self.state, self.state.mounts, path or kind, kind, None)

    def enable_auth(self, kind: str, path: str | None = None) -> None:
        system.add_mount(self.state, self.state.auth_mounts, path or kind, kind, None)

    def engine(self, mount: str, auth: bool = False) -> Any:
        table = self.state.auth_mounts if auth else self.state.mounts
        found = table.get(mount.strip("/") + "/")
        if found is None:
            raise KeyError(f"no {'auth ' if auth else ''}mount at {mount}")
        return found.engine

    def write_kv(self, mount: str, path: str, data: dict[str, Any]) -> None:
        with self.state.lock:
            self.engine(mount).write(path, data)

    def set_policy(self, name: str, rules: dict[str, list[str]]) -> None:
        with self.state.lock:
            self.state.policies[name] = {glob: list(caps) for glob, caps in rules.items()}

    def create_token(
        self, policies: list[str], ttl: int, max_ttl: int | None = None,
        renewable: bool = True, period: int | None = None,
    ) -> str:
        """A child of the root token; max_ttl is its explicit max TTL from creation."""
        token = tokens.new_token(
            self.state, policies, ttl=ttl, explicit_max_ttl=max_ttl or 0,
            period=period or 0, renewable=renewable, parent=self.root_token,
        )
        return token.id

    def token_accessor(self, token: str) -> str:
        with self.state.lock:
            return self.state.tokens[token].accessor

    def configure_database(self, postgres: Any, name: str = "pg",
                           allowed_roles: str = "*", mount: str = "database") -> None:
        """Mount the database engine (if needed) and a connection to `postgres` as `name`."""
        if mount.strip("/") + "/" not in self.state.mounts:
            self.enable_secrets("database", mount)
        self.engine(mount).configure_postgres(postgres, name, allowed_roles)

    def add_database_role(self, name: str, mount: str = "database", **options: Any) -> None:
        """A dynamic role (DatabaseEngine.add_role: db_name="pg", default_ttl=3600,
        max_ttl=86400, creation_statements, revocation_statements, renew_statements)."""
        self.engine(mount).add_role(name, **options)

    def add_static_role(self, name: str, username: str, rotation_period: int,
                        db_name: str = "pg", mount: str = "database") -> None:
        """A static role on an existing PostgreSQL user; its password is set now."""
        self.engine(mount).add_static_role(name, username, rotation_period, db_name)

    def configure_aws(self, moto: Any, header_value: str | None = None,
                      mount: str = "aws", **fields: Any) -> None:
        """Enable auth/aws (if needed) and point config/client at moto (a MotoServer):
        sts_endpoint and iam_endpoint = moto.endpoint_url, the admin's keys for IAM
        lookups, and iam_server_id_header_value = header_value when given."""
        if mount.strip("/") + "/" not in self.state.auth_mounts:
            self.enable_auth("aws", mount)
        config = {"sts_endpoint": moto.endpoint_url, "iam_endpoint": moto.endpoint_url,
                  "access_key": moto.admin_access_key_id,
                  "secret_key": moto.admin_secret_access_key, **fields}
        if header_value is not None:
            config["iam_server_id_header_value"] = header_value
        self.engine(mount, auth=True).configure(**config)

    def add_aws_role(self, name: str, bound_iam_principal_arn: str | list[str],
                     policies: list[str], mount: str = "aws", **fields: Any) -> None:
        """An IAM role of auth/aws (fields as the API: ttl, max_ttl, period,
        resolve_aws_unique_ids...); unique IDs are resolved through moto's IAM now."""
        self.engine(mount, auth=True).add_role(
            name, bound_iam_principal_arn=bound_iam_principal_arn, policies=policies, **fields)

    # -- fault controls --------------------------------------------------------------------

    def seal(self) -> None:
        self.state.sealed = True

    def unseal(self) -> None:
        self.state.sealed = False

    def set_health(self, **mode: bool) -> None:
        """What sys/health reports: initialized=False, standby=True, performance_standby=True,
        dr_secondary=True, ha_unhealthy=True or removed=True (only sys/health changes)."""
        allowed = {"initialized", "standby", "performance_standby", "dr_secondary",
                   "ha_unhealthy", "removed"}
        unknown = set(mode) - allowed
        if unknown:
            raise ValueError(f"unknown health flags: {sorted(unknown)}")
        self.state.health_mode = dict(mode)

    def clear_faults(self) -> None:
        self.faults.clear()
        self.unseal()
        self.state.health_mode = {}

    def revoke_lease(self, lease_id: str) -> bool:
        """Revoke a lease as an operator would (its revocation statements run)."""
        return leases.revoke_lease(self.state, lease_id)

    def revoke_token(self, token: str | None = None, accessor: str | None = None) -> None:
        with self.state.lock:
            if token is None and accessor is not None:
                entry = self.state.token_by_accessor(accessor)
                token = entry.id if entry is not None else None
            if token is not None:
                tokens.revoke_token(self.state, token)

    def expire_token(self, token: str) -> None:
        """Make a token expire now; the reaper revokes it and its leases shortly after."""
        with self.state.lock:
            entry = self.state.tokens.get(token)
            if entry is not None:
                entry.expire_time = time.time()

    def leases(self, prefix: str = "") -> list[str]:
        with self.state.lock:
            return sorted(i for i in self.state.leases if i.startswith(prefix))
