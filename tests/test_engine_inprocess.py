"""Characterisation of the rotation engine driven in-process on the test thread: a fake
clock, a fake Vault-like source (fetch, renew, revoke, lookup) and a plain list as the
supervisor's inbox. No engine thread, no child process, no server: each test moves the
clock in small steps and runs one turn of the engine's loop per step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from entrypoint.config.model import Config, OnChange, load
from entrypoint.errors import UnavailableError
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.process import events
from entrypoint.rotation.engine import Engine
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched
from entrypoint.sources.registry import Sources
from tests.helpers.clock import Clock

LOG = logging.getLogger("entrypoint")
DB = ("vault", "database/creds/app", None)
AWS = ("vault", "aws/creds/app", None)
KV = ("vault", "secret/app", None)
TTL = 100.0
WAIT_MIN, WAIT_MAX = 2.0, 10.0
ENV = {"DB_PASSWORD": "vault:database/creds/app#password",
       "AWS_SECRET": "vault:aws/creds/app#password",
       "API_KEY": "vault:secret/app#key", "PLAIN": "plain"}


@dataclass
class FakeVault:
    """Leased paths (database/, aws/) hand out a new lease per read; secret/ is KV v2."""

    clock: Clock
    name: str = "vault"
    renewable: bool = True
    max_ttl: float | None = None  # renewals are capped to this (a role's max_ttl)
    failing: set[str] = field(default_factory=set)
    kv: dict[str, tuple[int, str]] = field(default_factory=lambda: {"secret/app": (1, "k1")})
    issued: int = 0
    fetches: list[tuple[str, float]] = field(default_factory=list)
    renewals: list[tuple[str, float]] = field(default_factory=list)
    revoked: list[tuple[str, float]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # lease id -> password

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.fetches.append((path, self.clock()))
        if path in self.failing:
            raise UnavailableError(f"{path}: the database refused a new user")
        if path in self.kv:
            number, value = self.kv[path]
            return Fetched(data={"key": Secret(value)}, kind="kv2", version=number,
                           fetched_at=self.clock())
        self.issued += 1
        lease_id = f"{path.split('/')[0]}-lease-{self.issued}"
        self.values[lease_id] = f"password-{self.issued}"
        return Fetched(data={"password": Secret(self.values[lease_id])}, kind="leased",
                       lease_id=lease_id, lease_duration=TTL, renewable=self.renewable,
                       fetched_at=self.clock())

    def renew_lease(self, lease_id: str, increment: float) -> tuple[float, bool, list[str]]:
        self.renewals.append((lease_id, self.clock()))
        granted = increment if self.max_ttl is None else min(increment, self.max_ttl)
        return granted, True, []

    def revoke_lease(self, lease_id: str) -> None:
        self.revoked.append((lease_id, self.clock()))

    def lookup_lease(self, lease_id: str) -> float | None:
        return None if lease_id in self.revoked_ids() else TTL

    def revoked_ids(self) -> list[str]:
        return [lease_id for lease_id, _ in self.revoked]

    def describe(self, path: str) -> str:
        return f"fake vault {path}"

    def close(self) -> None:
        pass


@dataclass
class Rig:
    clock: Clock
    source: FakeVault
    engine: Engine
    resolution: Resolution
    posted: list[Any]

    def step(self) -> None:
        """One turn of the engine's loop, on the test thread."""
        while not self.engine.inbox.empty():
            self.engine._handle(self.engine.inbox.get_nowait())  # type: ignore[arg-type]
        self.engine._run_due()

    def run_until(self, end: float, dt: float = 0.25,
                  stop: Callable[[], bool] = lambda: False) -> None:
        while self.clock.now < end and not stop():
            self.clock.now += dt
            self.step()

    def restarts(self) -> list[events.Restart]:
        return [e for e in self.posted if isinstance(e, events.Restart)]


def make_rig(environ: dict[str, str] = ENV, render: Callable[[Resolution], list[Any]] | None
             = None, **settings: str) -> Rig:
    variables = {"ENTRYPOINT_WAIT_MIN": f"{WAIT_MIN:g}s", "ENTRYPOINT_WAIT_MAX": f"{WAIT_MAX:g}s",
                 "ENTRYPOINT_LEASE_CHECK_INTERVAL": "0", "ENTRYPOINT_VAULT_CONCURRENCY": "1",
                 "ENTRYPOINT_POLL_INTERVAL": "1h"}
    variables.update({f"ENTRYPOINT_{k.upper()}": v for k, v in settings.items()})
    config: Config = load({}, variables)
    clock = Clock()
    source = FakeVault(clock)
    runtime = Runtime(config, environ, LOG, sources=Sources({"vault": lambda: source}, {}))
    posted: list[Any] = []
    render = render or (lambda _: [])
    engine = Engine(config, runtime, posted.append, LOG, render=render, clock=clock,
                    rng=lambda: 0.5)
    resolution = runtime.resolve()
    render(resolution)  # the app renders its templates once before it starts
    engine._adopt(resolution)
    return Rig(clock, source, engine, resolution, posted)


def fetched(rig: Rig, path: str) -> list[float]:
    return [t for p, t in rig.source.fetches if p == path]


def test_a_renewable_lease_is_renewed_at_its_renew_fraction_and_again_after() -> None:
    rig = make_rig(renew_fraction="0.75")
    start = rig.clock.now
    rig.run_until(start + 70.0)
    assert rig.source.renewals == []
    rig.run_until(start + 76.0)
    first = [t for lease, t in rig.source.renewals if lease == "database-lease-2"]
    # 0.75 of the ttl, jittered down by at most 10 % (renew_delay): never later.
    assert len(first) == 1 and 0.9 * 75.0 <= first[0] - start <= 75.0
    # The next renewal is scheduled from the renewal, on the ttl it granted.
    due = [when for when, _, task in rig.engine._tasks
           if task[:3] == ("renew", DB, "database-lease-2")]
    assert len(due) == 1 and 0.9 * 75.0 <= due[0] - first[0] <= 75.0
    assert rig.engine.leases[DB].times.expires_at == pytest.approx(first[0] + TTL)
    rig.run_until(due[0] + 0.5)
    assert [t for lease, t in rig.source.renewals if lease == "database-lease-2"][1:] == [
        pytest.approx(due[0], abs=0.25)]
    # Renewing changes nothing the app sees: no new read, no event, nothing revoked.
    assert len(fetched(rig, "database/creds/app")) == 1
    assert rig.posted == [] and rig.source.revoked == []


@pytest.mark.parametrize("how", ["not renewable", "renewal capped"])
def test_a_lease_that_cannot_be_extended_is_replaced_before_it_expires(how: str) -> None:
    rig = make_rig(**({"renewable": False} if False else {}))
    if how == "not renewable":
        rig = make_rig()
        rig.source.renewable = False
        rig.engine.leases.clear()
        rig.engine._tasks.clear()
        rig = make_rig_with(rig.source, renewable=False)
    else:
        rig = make_rig()
        rig.source.max_ttl = 40.0  # the first renewal (at ~71s) gets 40s, not 100s
    start = rig.clock.now
    expiry = start + TTL if how == "not renewable" else None
    rig.run_until(start + 300.0, stop=lambda: bool(rig.posted))
    [restart] = rig.restarts()
    old_lease = rig.resolution.generation.fetched[DB].lease_id
    if expiry is None:
        [(_, renewed_at)] = rig.source.renewals
        expiry = renewed_at + 40.0
    refetch = fetched(rig, "database/creds/app")[1:]
    assert len(refetch) == 1 and refetch[0] < expiry and rig.clock.now < expiry
    # The successor is what the new environment holds; nothing else was read again.
    new = rig.engine.resolution.generation.fetched[DB]  # type: ignore[union-attr]
    assert new.lease_id != old_lease
    assert restart.env["DB_PASSWORD"] == new.data["password"].reveal() == \
        rig.source.values[new.lease_id or ""]
    assert restart.env["AWS_SECRET"] == rig.resolution.child_env()["AWS_SECRET"]
    assert restart.env["PLAIN"] == "plain" and len(fetched(rig, "secret/app")) == 1


def make_rig_with(source: FakeVault, **attrs: Any) -> Rig:
    """A rig whose source has ``attrs`` set before the first fetch."""
    rig = make_rig(environ={})
    for name, value in attrs.items():
        setattr(rig.source, name, value)
    runtime = Runtime(rig.engine.config, ENV, LOG,
                      sources=Sources({"vault": lambda: rig.source}, {}))
    engine = Engine(rig.engine.config, runtime, rig.posted.append, LOG, render=lambda _: [],
                    clock=rig.clock, rng=lambda: 0.5)
    resolution = runtime.resolve()
    engine._adopt(resolution)
    return Rig(rig.clock, rig.source, engine, resolution, rig.posted)
