"""``vault:`` references answered by a Vault server: the Source the resolver and the
rotation engine use.

Every authenticated call goes through :meth:`VaultSource._authed`: it logs in on first
use, retries transient failures during start-up (see :mod:`entrypoint.sources.vault.client`), and
on a 403 asks Vault whether the token itself is still good. An invalid token means one
login and one more try; a good token means the policies do not allow the path, reported
with the token's policies.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from entrypoint.config.model import Config
from entrypoint.errors import (
    AuthError,
    ConfigError,
    EntrypointError,
    PermissionDenied,
    SecretNotFound,
    UnavailableError,
)
from entrypoint.sources.base import Fetched, LoginState, Source, Step
from entrypoint.sources.vault import folders, kv
from entrypoint.sources.vault.auth import LoginMethod, choose
from entrypoint.sources.vault.client import (
    VaultClient,
    token_is_invalid,
    transient_reason,
    vault_message,
)
from entrypoint.sources.vault.connection import Connection
from entrypoint.sources.vault.leases import LeaseKeeping, Refused
from entrypoint.sources.vault.token_keeper import TokenKeeper

if TYPE_CHECKING:
    from entrypoint.sources.vault.issue import Issuer, Params

T = TypeVar("T")


class VaultSource(LeaseKeeping, Source):
    name = "vault"

    def __init__(self, client: VaultClient, method: LoginMethod, *, log: logging.Logger,
                 revoke_on_exit: bool = True, keeper: TokenKeeper | None = None) -> None:
        self.client = client
        self.method = method
        self.log = log
        self.keeper = keeper or TokenKeeper(client, method, log=log,
                                            revoke_on_exit=revoke_on_exit)
        self.revoke_on_close = revoke_on_exit
        self.mounts = kv.MountTable(client.connection.namespace)
        self._leases: set[str] = set()
        self._leases_lock = threading.Lock()
        self._closed = False
        # Writes (sources/vault/issue.py) are made on first use: its hashlib (OpenSSL's,
        # 0.5 MB) stays out of a supervisor that only reads.
        self._issuer: Issuer | None = None
        self._issue_settings: dict[str, Any] = {}  # Issuer's defaults unless from_config

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] = os.environ) -> VaultSource:
        log = logging.getLogger("entrypoint")
        connection = Connection.from_environ(environ, log)
        if connection.socket_path and config.user:
            # The agent's socket: a listener run by the app's user is refused (transport).
            # A user unknown here (check, render) is reported where the app is started.
            from entrypoint.process.identity import resolve_user

            try:
                app_uid: int | None = resolve_user(config.user).uid
            except ConfigError:
                app_uid = None
            if app_uid is not None and app_uid != os.getuid():
                connection = dataclasses.replace(connection, app_uid=app_uid)
        method = choose(config, environ)
        client = VaultClient(connection, startup_timeout=config.startup_timeout, log=log,
                             pool_size=max(10, config.vault_concurrency + 2))
        # In exec mode the app outlives us with what we fetched: leave token and leases be.
        revoke = config.revoke_on_exit and config.mode != "exec"
        keeper = TokenKeeper(client, method, log=log, revoke_on_exit=revoke,
                             renew_fraction=config.renew_fraction)
        source = cls(client, method, log=log, revoke_on_exit=revoke, keeper=keeper)
        source._issue_settings = {"cache_dir": str(config.issue_cache_dir or ""),
                                  "replace_fraction": config.replace_fraction}
        return source

    @property
    def issuer(self) -> Issuer:
        if self._issuer is None:
            from entrypoint.sources.vault.issue import Issuer

            self._issuer = Issuer(**self._issue_settings)
        return self._issuer

    # -- the Source protocol ------------------------------------------------------------
    def fetch(self, path: str, version: int | None = None) -> Fetched:
        if path.endswith("/") and not self._closed:  # a folder: secrets = ["kv/app/"]
            return folders.fetch_folder(self, path)
        path = path.strip("/")
        if self._closed:
            raise UnavailableError(f"vault:{path}: shutting down; nothing more is fetched")
        mount = self.mount_of(path)
        rest = path[len(mount.path):]
        started = time.monotonic()
        if mount.version == 2:
            return self._read_kv2(path, mount, rest, version, started)
        if version is not None:
            raise ConfigError(f"vault:{path}?version={version}: ?version applies to KV v2 "
                              f"only; {path} is on {mount.label}")
        # A caching Vault Agent or Proxy answers a request identical to one it has seen
        # (same path, headers, token) with the cached lease: a replacement would get the
        # very credential it replaces. A header unique to this read makes it a new request.
        nonce = os.urandom(8).hex()
        response = self._authed(f"read {path}", path, lambda: self.client.api.get(
            kv.api_path(path), headers={kv.FRESH_HEADER: nonce}))
        if mount.version == 1:
            return kv.kv1_fetched(path, response, started)
        fetched = kv.leased_fetched(path, mount, response, started)
        if fetched.lease_id:
            self._hold(path, fetched.lease_id)
        return fetched

    def issue(self, path: str, params: Params) -> Fetched:
        if self._closed:
            raise UnavailableError(f"vault:{path}: shutting down; nothing more is issued")
        return self.issuer.issue(self, path, params)

    def check_issue(self, path: str, params: Params) -> tuple[str, Fetched]:
        return self.issuer.check(self, path, params)

    def describe(self, path: str) -> str:
        mount = self.mounts.cached(path.strip("/"))
        where = f" ({mount.label})" if mount else ""
        return f"Vault at {self.client.connection.addr} path {path}{where}"

    def close(self) -> None:
        # The flag and the list are taken together: a lease that arrives after this
        # point is given back by _hold, one that arrived before is in the list.
        with self._leases_lock:
            if self._closed:
                return
            self._closed = True
            leases = sorted(self._leases)
        self.client.end_startup()
        if self.revoke_on_close:
            revoked = 0
            for lease_id in leases:
                try:
                    self.revoke_lease(lease_id)
                    revoked += 1
                except EntrypointError as exc:
                    self.log.warning("vault: could not revoke a lease on exit: %s", exc)
            if revoked:
                self.log.info("vault: revoked %d lease(s) on exit", revoked)
        self.keeper.close()
        self.client.close()

    def keep_on_close(self) -> None:
        """Leave token and leases valid at close (render for an init container, exec)."""
        self.revoke_on_close = False
        self.keeper.revoke_on_exit = False

    # -- what else callers use ----------------------------------------------------------
    def login(self) -> None:
        """Log in now (check, start-up) and keep the token renewed from here on."""
        self._ensure_login()
        self.keeper.start()

    def health(self) -> dict[str, Any]:
        """sys/health as a dict (unauthenticated); transient trouble is retried."""
        from entrypoint.sources.vault import answers as hx

        def ask() -> Any:
            try:
                data = self.client.anonymous.get("/v1/sys/health")
            except hx.VaultError as exc:
                # A standby (429, 473), an uninitialised (501) or a sealed (503) Vault
                # says so in the status and still answers its state.
                if not isinstance(exc.json, dict):
                    raise
                data = exc.json
            if isinstance(data, dict) and data.get("sealed"):
                raise hx.VaultDown("Vault is sealed", status=503)
            return data

        data = self.client.call("health check at sys/health", ask)
        return data if isinstance(data, dict) else {}

    def policies(self) -> tuple[str, ...]:
        return self.keeper.policies()

    def end_startup(self) -> None:
        """Start-up is over: from now on a failed call comes back at once."""
        self.client.end_startup()

    def login_state(self) -> LoginState:
        """Login generation and expiry of the current token, read together."""
        while True:  # a login between the two reads would pair them wrongly
            generation = self.keeper.generation
            deadline = self.token_expires_at()
            if self.keeper.generation == generation:
                return LoginState(generation, deadline)

    def auth_status(self) -> dict[str, Any]:
        expires = self.token_expires_at()
        return {"method": self.method.describe(),
                "token_ttl": None if expires is None else round(expires - time.monotonic(), 1)}

    def preflight(self) -> list[Step]:
        from entrypoint.sources.vault.preflight import preflight

        return preflight(self)

    def token_expires_at(self) -> float | None:
        """Monotonic time at which the current token expires (None: it does not).

        Vault revokes every lease a token created when that token expires, so a lease can
        end there even if its own TTL is longer; the rotation engine can plan with it.
        """
        expires = self.keeper.expires_at
        return None if expires == float("inf") or self.keeper.current is None else expires

    def mount_of(self, path: str) -> kv.Mount:
        from entrypoint.sources.vault import answers as hx

        def ask(p: str) -> Mapping[str, Any] | None:
            try:
                response = self._authed(
                    f"mount lookup for {p}", p,
                    lambda: self.client.api.get(
                        kv.api_path(f"sys/internal/ui/mounts/{p}")))
            except SecretNotFound:
                return None  # an old Vault without the endpoint: read generically
            data = response.get("data") if isinstance(response, dict) else None
            return data if isinstance(data, dict) else None

        try:
            return self.mounts.find(path, ask)
        except hx.VaultError as exc:  # pragma: no cover - _authed maps every VaultError
            raise ConfigError(f"vault:{path}: {vault_message(exc)}") from None

    # -- internals ----------------------------------------------------------------------
    def _read_kv2(self, path: str, mount: kv.Mount, rest: str, version: int | None,
                  started: float) -> Fetched:
        from entrypoint.sources.vault import answers as hx

        params = {"version": version} if version is not None else None
        url = kv.api_path(kv.v2_data_path(mount, rest))
        try:
            response = self._authed(f"read {path}", path, lambda: (
                self.client.api.get(url, params=params)), raw_404=True)
        except hx.InvalidPath as exc:
            deleted = kv.deleted_version_error(path, version, exc.json)
            if deleted is not None:
                raise deleted from None
            what = f"version {version} of {path}" if version is not None else path
            hint = ("write the path without data/: it is added for KV v2"
                    if rest.startswith("data/") else None)
            raise SecretNotFound(f"vault:{path}: {what} does not exist on {mount.label}",
                                 hint=hint) from None
        return kv.kv2_fetched(path, response, started)

    def _authed(self, what: str, path: str, fn: Callable[[], T], raw_404: bool = False) -> T:
        from entrypoint.sources.vault import answers as hx

        seen = self._ensure_login()
        if not self._closed:  # the revocations of close() need no renewal thread
            self.keeper.start()
        for attempt in (1, 2):
            try:
                return self.client.call(what, fn)
            except hx.Forbidden:
                lookup = self._lookup_self()
                if lookup is not None:
                    policies = sorted({*lookup.get("policies", []),
                                       *lookup.get("identity_policies", [])})
                    raise PermissionDenied(
                        f"vault:{path}: permission denied ({what})",
                        hint=f"the token's policies ({', '.join(policies) or 'none'}) do not "
                             f"allow it") from None
                if attempt == 2:
                    raise AuthError(f"vault:{path}: the token was refused again right after "
                                    f"logging in with {self.method.describe()}") from None
                seen = self.keeper.relogin(seen, "the token is no longer valid (HTTP 403)")
            except hx.InvalidPath as exc:
                if raw_404:
                    raise
                raise SecretNotFound(f"vault:{path}: not found ({what})",
                                     hint=_not_found_hint(exc)) from None
            except hx.InvalidRequest as exc:
                text = vault_message(exc)
                if "unknown role" in text:
                    raise SecretNotFound(f"vault:{path}: {text}") from None
                raise Refused(what, path, text) from None
            except hx.VaultError as exc:
                raise UnavailableError(f"Vault at {self.client.connection.addr}: {what} for "
                                       f"{path} failed: {vault_message(exc)}") from None
            except Exception as exc:
                mapped = self._transport_error(what, exc)
                if mapped is None:
                    raise
                raise mapped from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_login(self) -> int:
        """``keeper.ensure()``, with a TLS or connection failure of the login itself
        reported like any other call's (not as an internal error with a traceback)."""
        try:
            return self.keeper.ensure()
        except Exception as exc:
            mapped = self._transport_error(f"login with {self.method.describe()}", exc)
            if mapped is None:
                raise
            raise mapped from None

    def _transport_error(self, what: str, exc: BaseException) -> UnavailableError | None:
        from entrypoint.describe import transport_reason
        from entrypoint.sources.vault.answers import TLSError, TransportError

        if isinstance(exc, TLSError):
            return UnavailableError(
                f"Vault at {self.client.connection.addr}: TLS failed: "
                f"{transport_reason(exc)}",
                hint="check VAULT_CACERT / VAULT_CAPATH / VAULT_TLS_SERVER_NAME")
        if isinstance(exc, TransportError):
            return UnavailableError(f"Vault at {self.client.connection.addr}: {what}: "
                                    f"{transient_reason(exc) or transport_reason(exc)}")
        return None

    def _lookup_self(self) -> dict[str, Any] | None:
        """The current token's lookup data, or None when Vault says it is not valid."""
        from entrypoint.sources.vault import answers as hx

        try:
            response = self.client.call("token lookup",
                                        lambda: self.client.api.get("/v1/auth/token/lookup-self"))
        except hx.Forbidden as exc:
            # Valid but without the `default` policy: it may not look itself up.
            return None if token_is_invalid(exc) else {}
        except hx.VaultError:
            return {}
        data = response.get("data") if isinstance(response, dict) else None
        return data if isinstance(data, dict) else {}


def _not_found_hint(exc: BaseException) -> str | None:
    body = getattr(exc, "json", None)
    warnings = body.get("warnings") if isinstance(body, dict) else None
    if warnings and any("versioned" in str(w) for w in warnings):
        return "this looks like a KV v2 mount read as v1"
    return None
