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
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.process import events
from entrypoint.rotation.engine import Engine
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Renewal, Source
from entrypoint.sources.registry import Sources
from tests.helpers import engine_turns
from tests.helpers.clock import Clock

LOG = logging.getLogger("entrypoint")
DB = SourceKey("vault", "database/creds/app")
AWS = SourceKey("vault", "aws/creds/app")
KV = SourceKey("vault", "secret/app")
TTL = 100.0
WAIT_MIN, WAIT_MAX = 2.0, 10.0
ENV = {"DB_PASSWORD": "vault:database/creds/app#password",
       "AWS_SECRET": "vault:aws/creds/app#password",
       "API_KEY": "vault:secret/app#key", "PLAIN": "plain"}


@dataclass
class FakeVault(Source):
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
            return Fetched(data={"key": Secret(value)}, kind="kv2", refresh=Refresh.POLL,
                           version=number,
                           fetched_at=self.clock())
        self.issued += 1
        lease_id = f"{path.split('/')[0]}-lease-{self.issued}"
        self.values[lease_id] = f"password-{self.issued}"
        return Fetched(data={"password": Secret(self.values[lease_id])}, kind="leased",
                       refresh=Refresh.LEASE,
                       lease_id=lease_id, lease_duration=TTL, renewable=self.renewable,
                       fetched_at=self.clock())

    def renew_lease(self, lease_id: str, increment: float) -> Renewal:
        self.renewals.append((lease_id, self.clock()))
        granted = increment if self.max_ttl is None else min(increment, self.max_ttl)
        return Renewal(granted, True, [])

    def revoke_lease(self, lease_id: str) -> None:
        self.revoked.append((lease_id, self.clock()))

    def lookup_lease(self, lease_id: str) -> float | None:
        return None if lease_id in self.revoked_ids() else TTL

    def revoked_ids(self) -> list[str]:
        return [lease_id for lease_id, _ in self.revoked]

    def describe(self, path: str) -> str:
        return f"fake vault {path}"


@dataclass
class Rig:
    clock: Clock
    source: FakeVault
    engine: Engine
    resolution: Resolution
    posted: list[Any]

    def step(self) -> None:
        engine_turns.step(self.engine)

    def run_until(self, end: float, dt: float = 0.25,
                  stop: Callable[[], bool] = lambda: False) -> None:
        engine_turns.run_until(self.clock, self.engine, end, dt, stop)

    def restarts(self) -> list[events.Restart]:
        return [e for e in self.posted if isinstance(e, events.Restart)]


def make_rig(environ: dict[str, str] = ENV, *, renewable: bool = True,
             render: Callable[[Resolution], list[OnChange]] | None = None,
             **settings: str) -> Rig:
    variables = {"ENTRYPOINT_WAIT_MIN": f"{WAIT_MIN:g}s", "ENTRYPOINT_WAIT_MAX": f"{WAIT_MAX:g}s",
                 "ENTRYPOINT_LEASE_CHECK_INTERVAL": "0", "ENTRYPOINT_VAULT_CONCURRENCY": "1",
                 "ENTRYPOINT_POLL_INTERVAL": "1h"}
    variables.update({f"ENTRYPOINT_{k.upper()}": v for k, v in settings.items()})
    config: Config = load({}, variables)
    clock = Clock()
    source = FakeVault(clock, renewable=renewable)
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
    start, lease = rig.clock.now, rig.resolution.generation.fetched[DB].lease_id
    rig.run_until(start + 60.0)
    assert rig.source.renewals == []
    rig.run_until(start + 76.0)
    first = [t for held, t in rig.source.renewals if held == lease]
    # 0.75 of the ttl, jittered down by at most 10 % (renew_delay), never later.
    assert len(first) == 1 and 0.9 * 75.0 <= first[0] - start <= 75.0
    # The next renewal is scheduled from this one, on the ttl it granted.
    due = [when for when, _, task in rig.engine._tasks if task == ("renew", DB, lease)]
    assert len(due) == 1 and 0.9 * 75.0 <= due[0] - first[0] <= 75.0
    assert rig.engine.leases[DB].times.expires_at == pytest.approx(first[0] + TTL)
    rig.run_until(due[0] + 0.5)
    second = [t for held, t in rig.source.renewals if held == lease][1:]
    assert second == [pytest.approx(due[0], abs=0.25)]
    # Renewing changes nothing the app sees: no new read, no event, nothing revoked.
    assert len(fetched(rig, "database/creds/app")) == 1
    assert rig.posted == [] and rig.source.revoked == []


@pytest.mark.parametrize("how", ["not renewable", "renewal capped"])
def test_a_lease_that_cannot_be_extended_is_replaced_before_it_expires(how: str) -> None:
    rig = make_rig(renewable=how != "not renewable")
    rig.source.max_ttl = 40.0  # a renewal (at ~71s) is granted 40s, not the 100s asked
    start = rig.clock.now
    rig.run_until(start + 300.0, stop=lambda: bool(rig.posted))
    if how == "not renewable":
        assert rig.source.renewals == []
        expiry = start + TTL
    else:  # both leases renewed once, at the same moment, and capped
        assert len({t for _, t in rig.source.renewals}) == 1 and len(rig.source.renewals) == 2
        expiry = rig.source.renewals[0][1] + 40.0
    [restart] = rig.posted  # both leases share a schedule: one successor replaces both
    assert isinstance(restart, events.Restart)
    assert rig.clock.now < expiry and rig.engine.resolution is not None
    for key, name in ((DB, "DB_PASSWORD"), (AWS, "AWS_SECRET")):
        refetch = fetched(rig, key[1])[1:]
        assert len(refetch) == 1 and refetch[0] < expiry
        # The successor is what the new environment holds, and the lease now held.
        new = rig.engine.resolution.generation.fetched[key]
        assert new.lease_id and new.lease_id != rig.resolution.generation.fetched[key].lease_id
        assert rig.engine.leases[key].lease_id == new.lease_id
        assert restart.env[name] == new.data["password"].reveal() == \
            rig.source.values[new.lease_id]
    # The static secret is not read again; the old leases are not revoked yet.
    assert restart.env["PLAIN"] == "plain" and len(fetched(rig, "secret/app")) == 1
    assert rig.source.revoked == []


def test_changes_within_the_wait_window_give_one_action() -> None:
    rig = make_rig()
    start = rig.clock.now
    rig.engine.notify("first", [DB])
    rig.run_until(start + 1.5)
    rig.source.kv["secret/app"] = (2, "k2")
    rig.engine.notify("second", [KV])
    rig.run_until(start + 3.0)
    rig.engine.notify("third", [AWS])
    rig.run_until(start + 4.5)  # the last change was 1.5s ago: wait_min not over
    assert rig.posted == []
    rig.run_until(start + 30.0)
    [restart] = rig.posted
    assert isinstance(restart, events.Restart)
    assert restart.reason == "first; second; third"
    assert restart.env["API_KEY"] == "k2"
    assert restart.env["DB_PASSWORD"] != rig.resolution.child_env()["DB_PASSWORD"]
    assert restart.env["AWS_SECRET"] != rig.resolution.child_env()["AWS_SECRET"]
    for path in ("database/creds/app", "aws/creds/app", "secret/app"):
        assert len(fetched(rig, path)) == 2, path  # one successor: each read once more


def test_a_burst_that_never_goes_quiet_is_acted_on_at_wait_max() -> None:
    rig = make_rig()
    start = rig.clock.now
    rig.source.kv["secret/app"] = (2, "k2")
    while rig.clock.now < start + 15.0:  # a change every second; wait_min is 2s
        rig.engine.notify(f"change at {rig.clock.now - start:g}s", [KV])
        rig.run_until(rig.clock.now + 1.0)
    rig.run_until(start + 40.0)
    # The first burst is cut at wait_max; the rest (10s..14s) is a second burst whose
    # successor reads the same value again: no second action.
    reads = fetched(rig, "secret/app")
    assert reads[1:] == [pytest.approx(start + WAIT_MAX, abs=0.25),
                         pytest.approx(start + 14.0 + WAIT_MIN, abs=0.25)]
    [restart] = rig.posted
    assert isinstance(restart, events.Restart) and restart.env["API_KEY"] == "k2"
    assert restart.reason.split("; ")[0] == "change at 0s"


def test_a_failed_successor_backs_off_revokes_its_leases_then_restarts_once() -> None:
    rig = make_rig()
    rig.source.failing = {"database/creds/app"}
    rig.engine.rotate_all("rotation requested by 'entrypoint rotate'")
    waits = []
    for _ in range(3):
        before = len(rig.source.fetches)
        rig.run_until(rig.clock.now + 60.0,
                      stop=lambda n=before: len(rig.source.fetches) > n + 1)
        assert rig.posted == []
        # aws/ was fetched (a new lease) before database/ failed: that lease is given back.
        assert rig.source.fetches[-2][0] == "aws/creds/app"
        assert rig.source.fetches[-1][0] == "database/creds/app"
        assert rig.source.revoked[-1][0] == f"aws-lease-{rig.source.issued}"
        assert rig.engine.not_before > rig.clock.now
        waits.append(rig.engine.not_before - rig.clock.now)
    assert waits[0] < waits[1] < waits[2]
    # The app's own leases are kept meanwhile.
    kept = {f.lease_id for f in rig.resolution.generation.fetched.values() if f.lease_id}
    assert kept.isdisjoint(rig.source.revoked_ids()) and len(rig.source.revoked) == 3
    rig.source.failing.clear()
    rig.run_until(rig.clock.now + 60.0)
    [restart] = rig.posted
    assert isinstance(restart, events.Restart)
    assert restart.env["DB_PASSWORD"] != rig.resolution.child_env()["DB_PASSWORD"]
    assert len(rig.source.revoked) == 3 and rig.engine.act_failures == 0


def test_old_leases_are_revoked_only_once_the_restarted_app_runs() -> None:
    rig = make_rig(revoke_grace="5s")
    old = {f.lease_id for f in rig.resolution.generation.fetched.values() if f.lease_id}
    rig.engine.rotate_all("rotate")
    rig.run_until(rig.clock.now + 30.0, stop=lambda: bool(rig.posted))
    [restart] = rig.posted
    assert isinstance(restart, events.Restart) and restart.generation == 1
    rig.run_until(rig.clock.now + 60.0)  # well past revoke_grace: a restart waits for the app
    assert rig.source.revoked == []
    rig.engine.child_started(4242, 0)  # a child on the first values: nothing of theirs goes
    rig.step()
    assert rig.source.revoked == []
    rig.engine.child_started(4243, restart.generation)
    rig.step()
    assert set(rig.source.revoked_ids()) == old
    rig.engine.child_started(4244, restart.generation)  # a later start revokes nothing more
    rig.step()
    assert len(rig.source.revoked) == len(old)


def test_a_start_on_an_older_successor_keeps_the_leases_of_a_newer_one() -> None:
    """Successor A is posted, then B before A's child ran: the start of A's child gives
    back only what A replaced, never the leases A's child runs on (B replaced those)."""
    rig = make_rig(revoke_grace="5s")
    first = {f.lease_id for f in rig.resolution.generation.fetched.values() if f.lease_id}
    rig.engine.rotate_all("rotate A")
    rig.run_until(rig.clock.now + 30.0, stop=lambda: len(rig.restarts()) == 1)
    a = rig.restarts()[0]
    rig.engine.rotate_all("rotate B")
    rig.run_until(rig.clock.now + 30.0, stop=lambda: len(rig.restarts()) == 2)
    b = rig.restarts()[1]
    assert (a.generation, b.generation) == (1, 2)
    held_by_a = set(rig.source.values) - first - {
        f.lease_id for f in rig.engine.resolution.generation.fetched.values()  # type: ignore[union-attr]
        if f.lease_id}
    assert len(held_by_a) == 2 and rig.source.revoked == []
    rig.engine.child_started(4242, a.generation)
    rig.step()
    assert set(rig.source.revoked_ids()) == first  # A's child still holds its own leases
    rig.engine.child_started(4243, b.generation)
    rig.step()
    assert set(rig.source.revoked_ids()) == first | held_by_a


@pytest.mark.parametrize("on_change", ["signal:HUP", "none"])
def test_old_leases_are_revoked_after_revoke_grace_when_the_app_is_not_restarted(
        on_change: str) -> None:
    rendered: list[str] = []

    def render(resolution: Resolution) -> list[OnChange]:
        """A file template that uses the database password (the env does not)."""
        text = resolution.generation.get(DB).data["password"].reveal()
        changed = rendered[-1:] != [text]
        rendered.append(text)
        return [OnChange.parse(on_change)] if changed else []

    rig = make_rig({"PLAIN": "plain"}, render=render, revoke_grace="5s")
    [old] = [f.lease_id for f in rig.resolution.generation.fetched.values() if f.lease_id]
    rig.engine.rotate_all("rotate")
    rig.run_until(rig.clock.now + 30.0, stop=lambda: len(rendered) > 1)
    acted = rig.clock.now
    assert not rig.restarts() and len(set(rendered)) == 2
    if on_change == "none":
        assert rig.posted == []
    else:
        assert [(type(e), e.signum) for e in rig.posted] == [(events.SignalChild, 1)]
    rig.engine.child_started(4242, 0)  # no bearing here
    rig.run_until(acted + 4.5)
    assert rig.source.revoked == []
    rig.run_until(acted + 6.0)
    assert rig.source.revoked == [(old, pytest.approx(acted + 5.0, abs=0.25))]


def test_rotate_all_refetches_every_dynamic_secret_and_no_static_one() -> None:
    rig = make_rig()
    before = rig.resolution.child_env()
    rig.engine.rotate_all("rotation requested by 'entrypoint rotate'")
    rig.run_until(rig.clock.now + 30.0)
    assert [p for p, _ in rig.source.fetches[3:]] == ["aws/creds/app", "database/creds/app"]
    [restart] = rig.posted
    assert isinstance(restart, events.Restart)
    assert restart.reason == "rotation requested by 'entrypoint rotate'"
    assert restart.env["API_KEY"] == before["API_KEY"] == "k1"
    assert restart.env["DB_PASSWORD"] != before["DB_PASSWORD"]
    assert restart.env["AWS_SECRET"] != before["AWS_SECRET"]


def test_a_poll_that_finds_a_new_kv_version_restarts_once() -> None:
    rig = make_rig(poll_interval="60s")
    start = rig.clock.now
    rig.run_until(start + 61.0)  # first poll: same version, nothing to do
    assert len(fetched(rig, "secret/app")) == 2 and rig.posted == []
    rig.source.kv["secret/app"] = (2, "k2")
    rig.run_until(start + 150.0)
    assert len(fetched(rig, "secret/app")) == 3  # the poll's read is the successor's value
    [restart] = rig.posted
    assert isinstance(restart, events.Restart)
    assert restart.env["API_KEY"] == "k2" and "v1 -> v2" in restart.reason
    assert restart.env["DB_PASSWORD"] == rig.resolution.child_env()["DB_PASSWORD"]
    assert len(fetched(rig, "database/creds/app")) == 1 and rig.source.revoked == []
