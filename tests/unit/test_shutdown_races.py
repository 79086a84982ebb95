"""Shutdown against work still in flight (issue 14, item 9), in-process and made
deterministic with events: a lease whose read was under way when VaultSource.close()
took its list, and a SIGTERM (the supervisor's shutdown) while secrets still resolve."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from entrypoint.commands.run import Resident
from entrypoint.config.model import Config
from entrypoint.errors import UnavailableError
from entrypoint.ops.control import address
from entrypoint.plan.resolution import Runtime
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Source
from entrypoint.sources.registry import Sources
from entrypoint.sources.vault.auth import LoginResult
from entrypoint.sources.vault.source import VaultSource

LOG = logging.getLogger("entrypoint")
CREDS = "database/creds/app"


@dataclass
class GivenToken:
    """A token the user gave (VAULT_TOKEN): never revoked by us, so its leases do not end
    with it -- the case where a late lease really leaks."""

    name: str = "token"
    mount: str = "token"

    def login(self, client: Any) -> LoginResult:
        return LoginResult(token=Secret("given-token-value"), ttl=0, renewable=False,
                           created=False)

    def describe(self) -> str:
        return "the given token"


@dataclass
class HeldReadVault:
    """The few Vault calls a credential read makes, with a read that can be held until
    released: what it takes to have close() run while a read is in flight."""

    hold: threading.Event | None = None
    reading: threading.Event = field(default_factory=threading.Event)
    issued: int = 0
    revoked: list[str] = field(default_factory=list)
    connection: Any = field(default_factory=lambda: SimpleNamespace(addr="http://fake",
                                                                      namespace=None))

    def __post_init__(self) -> None:
        self.api = SimpleNamespace(get=self._get, put=self._put)

    def _put(self, path: str, body: dict[str, str]) -> None:
        assert path == "/v1/sys/leases/revoke"
        self.revoked.append(body["lease_id"])

    def _get(self, url: str, **_: Any) -> dict[str, Any]:
        if "/sys/internal/ui/mounts/" in url:
            return {"data": {"path": "database/", "type": "database"}}
        self.reading.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the read"
        self.issued += 1
        return {"lease_id": f"{CREDS}/lease-{self.issued}", "lease_duration": 3600,
                "renewable": True, "data": {"username": "v-app", "password": "pw-0123456789"}}

    def call(self, what: str, fn: Any) -> Any:
        return fn()

    def set_token(self, token: str) -> None:
        pass

    def end_startup(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_lease_that_arrives_after_close_took_its_list_is_revoked() -> None:
    """Before the fix, close() revoked the leases it knew of, and a read under way at that
    moment came back with a lease that nobody revoked: with a token the user gave, it
    lived on until its TTL."""
    vault = HeldReadVault()
    source = VaultSource(vault, GivenToken(), log=LOG)  # type: ignore[arg-type]
    source.keeper.start = lambda: None  # type: ignore[method-assign]  # no renewal thread
    first = source.fetch(CREDS).lease_id
    vault.hold, outcome = threading.Event(), {}
    vault.reading.clear()

    def late_read() -> None:
        try:
            outcome["fetched"] = source.fetch(CREDS)
        except UnavailableError as exc:
            outcome["error"] = exc

    reader = threading.Thread(target=late_read)
    reader.start()
    try:
        assert vault.reading.wait(10), "the read never started"
        source.close()  # takes its list now: only the first lease is in it
        assert vault.revoked == [first]
    finally:
        vault.hold.set()
        reader.join(10)
    assert vault.revoked == [first, f"{CREDS}/lease-2"]
    assert "fetched" not in outcome and "shutting down" in str(outcome["error"])
    with pytest.raises(UnavailableError, match="shutting down"):
        source.fetch(CREDS)  # and nothing more goes out after close
    assert vault.issued == 2


@dataclass
class HeldSource(Source):
    """A local-like source whose read can be held: SIGTERM arrives while it resolves."""

    name: str = "vault"
    hold: threading.Event = field(default_factory=threading.Event)
    reading: threading.Event = field(default_factory=threading.Event)

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.reading.set()
        assert self.hold.wait(10), "the test never released the read"
        return Fetched(data={"k": Secret("value-of-the-key")}, kind="local")

    def describe(self, path: str) -> str:
        return path

    def close(self) -> None:
        pass


def test_shutdown_during_resolution_starts_no_engine_and_no_control_socket() -> None:
    """A SIGTERM while secrets resolve makes the supervisor exit without waiting for the
    prepare thread. Before the fix that thread went on, and started the rotation engine
    and the control socket on the sources shutdown had closed."""
    name = f"@entrypoint-test-{secrets.token_hex(6)}"
    source = HeldSource()
    config = Config(control_socket=name)
    runtime = Runtime(config, {"A": "vault:app#k"}, LOG,
                      sources=Sources({"vault": lambda: source}, {}))
    resident = Resident(config, runtime, post=lambda _: None, log=LOG)
    outcome: dict[str, Any] = {}

    def prepare() -> None:  # what the supervisor's worker thread does
        try:
            outcome["env"] = resident.prepare()
        except UnavailableError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=prepare)
    worker.start()
    try:
        assert source.reading.wait(10), "resolution never started"
        resident.shutdown()  # the SIGTERM, while the read is in flight
    finally:
        source.hold.set()
        worker.join(10)
    try:
        assert "env" not in outcome and "shutting down" in str(outcome["error"])
        assert resident.rotation is None and resident.control is None
        assert not [t for t in threading.enumerate() if t.name in ("rotation", "control")]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, \
                pytest.raises(ConnectionRefusedError):
            sock.connect(address(name))
    finally:  # before the fix: stop what the late prepare started
        if resident.control is not None:
            resident.control.stop()
        if resident.rotation is not None:
            resident.rotation.stop()

