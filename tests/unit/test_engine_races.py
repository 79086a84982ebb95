"""The rotation engine in-process, with an injected clock and a fake leased source (issue
14, items 8 and 9): renewals go on while a successor keeps failing, and a stop while a
request is in flight leaves the engine's leases to the engine's own thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from entrypoint.config.model import Config
from entrypoint.errors import UnavailableError
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.rotation.engine import Engine
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Renewal, Source
from entrypoint.sources.registry import Sources
from tests.helpers.clock import Clock

LOG = logging.getLogger("entrypoint")
KEY = SourceKey("vault", "database/creds/app")
TTL = 100.0


@dataclass
class LeasedSource(Source):
    """A Vault-like source of dynamic credentials (fetch, renew, revoke, lookup) that can
    refuse new credentials or hold a read on demand: the faults these races need."""

    clock: Clock
    name: str = "vault"
    issued: int = 0
    refuse_new: bool = False  # as a database engine that cannot create users any more
    hold: threading.Event | None = None  # a read that hangs until set (Vault under load)
    reading: threading.Event = field(default_factory=threading.Event)
    renewed: list[str] = field(default_factory=list)
    revoked: list[tuple[str, str]] = field(default_factory=list)  # (lease, thread name)

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.reading.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the read"
        if self.refuse_new:
            raise UnavailableError("database/creds/app: the database refused a new user")
        self.issued += 1
        return Fetched(data={"password": Secret(f"password-number-{self.issued}")},
                       kind="leased", refresh=Refresh.LEASE,
                       lease_id=f"lease-{self.issued}", lease_duration=TTL,
                       renewable=True, fetched_at=self.clock())

    def renew_lease(self, lease_id: str, increment: float) -> Renewal:
        self.renewed.append(lease_id)
        return Renewal(increment, True, [])

    def revoke_lease(self, lease_id: str) -> None:
        self.revoked.append((lease_id, threading.current_thread().name))

    def lookup_lease(self, lease_id: str) -> float | None:
        return TTL

    def describe(self, path: str) -> str:
        return f"fake vault {path}"

    def close(self) -> None:
        pass


@dataclass
class Rig:
    clock: Clock
    source: LeasedSource
    engine: Engine
    resolution: Resolution
    posted: list[Any]


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = Clock()
    source = LeasedSource(clock)
    config = Config(wait_min=0.0, wait_max=0.0, lease_check_interval=0.0, revoke_on_exit=True)
    runtime = Runtime(config, {"DB_PASSWORD": "vault:database/creds/app#password"}, LOG,
                      sources=Sources({"vault": lambda: source}, {}))
    posted: list[Any] = []
    engine = Engine(config, runtime, posted.append, LOG, render=lambda _: [], clock=clock,
                    rng=lambda: 0.0)
    resolution = runtime.resolve()
    yield Rig(clock, source, engine, resolution, posted)
    engine.stop(timeout=5.0)


def step(engine: Engine) -> None:
    """One turn of the engine's loop, driven by the test (no thread)."""
    while not engine.inbox.empty():
        engine._handle(engine.inbox.get_nowait())  # type: ignore[arg-type]
    engine._run_due()


def test_renewals_go_on_while_the_successor_keeps_failing(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Item 8: `entrypoint rotate`, then every successor fetch fails. The lease the app
    runs on must still be renewed; before the fix its renewal was dropped (the key was
    dirty) and the lease expired at its TTL although Vault would have renewed it."""
    engine, clock, source = rig.engine, rig.clock, rig.source
    engine._adopt(rig.resolution)
    source.refuse_new = True
    engine.rotate_all("rotation requested by 'entrypoint rotate'")
    end = clock.now + 3 * TTL
    while clock.now < end:
        step(engine)
        clock.now += 1.0
    assert source.renewed and set(source.renewed) == {"lease-1"}
    assert engine.leases[KEY].times.expires_at > clock.now
    assert not [r for r in caplog.records if "expired" in r.getMessage()]
    # Vault gives new credentials again: the successor arrives and is adopted.
    source.refuse_new = False
    for _ in range(60):
        step(engine)
        clock.now += 1.0
    assert engine.leases[KEY].lease_id == "lease-2"


def test_stop_while_a_request_is_in_flight_leaves_the_leases_to_the_engine_thread(
        rig: Rig) -> None:
    """Item 9: stop() used to join for 10 s and then revoke from the main thread while
    the engine, still in a request, went on to adopt a new lease (which leaked). Now the
    main thread never touches the engine's state: the engine revokes its own leases, the
    one it was fetching included, when its request comes back."""
    engine, source = rig.engine, rig.source
    source.hold = threading.Event()
    source.reading.clear()  # set by the first resolution
    engine.start(rig.resolution)
    engine.rotate_all("rotation requested by 'entrypoint rotate'")
    assert source.reading.wait(10), "the engine never started the successor read"
    engine.stop(timeout=0.2)  # the read is still held: the join times out
    assert source.revoked == [], "the main thread revoked while the engine was acting"
    source.hold.set()
    assert engine._thread is not None
    engine._thread.join(10)
    assert not engine._thread.is_alive()
    assert sorted(source.revoked) == [("lease-1", "rotation"), ("lease-2", "rotation")]
