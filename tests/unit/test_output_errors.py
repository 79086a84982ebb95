"""One failing file template does not block the others (in-process, fake clock).

Two file templates read two KV paths; the engine is driven on the test thread as in
test_engine_inprocess.py, with the real ``Renderer`` writing into a temporary folder."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from entrypoint.config.model import Config, OnChange, TemplateSpec, load
from entrypoint.errors import SecretNotFound
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.resolution import Runtime
from entrypoint.process import events
from entrypoint.render.templates import Renderer, render_all
from entrypoint.rotation.engine import Engine
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, Source
from entrypoint.sources.registry import Sources
from tests.helpers import engine_turns
from tests.helpers.clock import Clock

LOG = logging.getLogger("entrypoint")
A, B = SourceKey("vault", "secret/a"), SourceKey("vault", "secret/b")
HUP = OnChange("signal", signal=1)
RELOAD = OnChange("command", command=("reload-b",))


@dataclass
class KV(Source):
    clock: Clock
    name: str = "vault"
    kv: dict[str, tuple[int, str]] = field(default_factory=lambda: {
        "secret/a": (1, "a1"), "secret/b": (1, "b1")})
    fetches: list[tuple[str, float]] = field(default_factory=list)

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.fetches.append((path, self.clock()))
        if path not in self.kv:
            raise SecretNotFound(f"vault:{path}: no secret at this path")
        number, value = self.kv[path]
        return Fetched(data={"key": Secret(value)}, kind="kv2", refresh=Refresh.POLL,
                       version=number, fetched_at=self.clock())

    def describe(self, path: str) -> str:
        return f"fake vault {path}"


@dataclass
class Rig:
    clock: Clock
    source: KV
    engine: Engine
    posted: list[Any]
    a: Path
    b: Path

    def run_until(self, end: float, dt: float = 0.25) -> None:
        engine_turns.run_until(self.clock, self.engine, end, dt)

    def signals(self) -> list[events.SignalChild]:
        return [e for e in self.posted if isinstance(e, events.SignalChild)]

    def commands(self) -> list[events.RunCommand]:
        return [e for e in self.posted if isinstance(e, events.RunCommand)]

    def fetched(self, path: str) -> list[float]:
        return [t for p, t in self.source.fetches if p == path]


def make_rig(tmp_path: Path, b_on_error: str | None = None) -> Rig:
    config: Config = load({}, {"ENTRYPOINT_WAIT_MIN": "2s", "ENTRYPOINT_WAIT_MAX": "10s",
                               "ENTRYPOINT_LEASE_CHECK_INTERVAL": "0",
                               "ENTRYPOINT_VAULT_CONCURRENCY": "1",
                               "ENTRYPOINT_POLL_INTERVAL": "1h"})
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    config = dataclasses.replace(config, template=[
        TemplateSpec(destination=a, contents="a={{ secret('secret/a').key }}\n", on_change=HUP),
        TemplateSpec(destination=b, contents="b={{ secret('secret/b').key }}\n",
                     on_change=RELOAD, error_on_refresh=b_on_error)])
    clock = Clock()
    source = KV(clock)
    runtime = Runtime(config, {"PLAIN": "plain"}, LOG,
                      sources=Sources({"vault": lambda: source}, {}))
    posted: list[Any] = []
    engine = Engine(config, runtime, posted.append, LOG, render=Renderer(config, runtime),
                    clock=clock, rng=lambda: 0.5)
    resolution = runtime.resolve()
    render_all(config, runtime, resolution)  # start: every template must render
    engine._adopt(resolution)
    return Rig(clock, source, engine, posted, a, b)


def test_a_failing_template_keeps_its_file_while_the_other_is_written_and_acted_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "entrypoint")
    rig = make_rig(tmp_path)
    start = rig.clock.now
    # secret/b goes away (a watch or a lease replacement marks it) as secret/a changes.
    del rig.source.kv["secret/b"]
    rig.source.kv["secret/a"] = (2, "a2")
    rig.engine.notify("secret/b changed", [B])
    rig.engine.notify("secret/a changed", [A])
    rig.run_until(start + 10.0 + 1.0)  # within wait_max + 1 s
    assert rig.a.read_text() == "a=a2\n"
    assert rig.b.read_text() == "b=b1\n"  # its last good bytes
    assert [s.signum for s in rig.signals()] == [1] and rig.commands() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("template " + str(rig.b) in w and "secret/b" in w and "last good file" in w
               for w in warnings), warnings
    assert not any("b1" in w or "a2" in w for w in warnings)
    # The failing path keeps its last good value, stays dirty and is read again with the
    # running backoff; secret/a's new value is adopted and not read again.
    assert rig.engine.resolution is not None
    assert rig.engine.resolution.generation.fetched[B].version == 1
    assert rig.engine.resolution.generation.fetched[A].version == 2
    assert B in rig.engine.dirty and A not in rig.engine.dirty
    reads_of_a = len(rig.fetched("secret/a"))
    rig.run_until(start + 60.0)
    assert len(rig.fetched("secret/b")) >= 4  # retried, the delay growing
    gaps = [y - x for x, y in zip(rig.fetched("secret/b")[1:], rig.fetched("secret/b")[2:],
                                  strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]
    assert len(rig.fetched("secret/a")) == reads_of_a
    assert len(rig.signals()) == 1 and rig.commands() == []
    # secret/b comes back with a new value: b is rendered once, with one action.
    rig.source.kv["secret/b"] = (3, "b3")
    rig.run_until(start + 120.0)
    assert rig.b.read_text() == "b=b3\n"
    assert [c.argv for c in rig.commands()] == [("reload-b",)]
    assert len(rig.signals()) == 1 and not any(isinstance(e, events.Restart)
                                               for e in rig.posted)
    assert B not in rig.engine.dirty and rig.engine.failing == {}
    assert any("recovered: template" in r.getMessage() for r in caplog.records)
    settled = len(rig.fetched("secret/b"))
    rig.run_until(start + 200.0)
    assert len(rig.fetched("secret/b")) == settled  # no more retries once it rendered


def test_a_template_whose_new_value_lacks_a_key_keeps_its_file_and_the_old_value(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    start = rig.clock.now
    rig.source.kv["secret/a"] = (2, "a2")
    rig.engine.notify("secret/a changed", [A])
    rig.engine.notify("secret/b changed", [B])
    rig.source.kv["secret/b"] = (2, "b2")
    real_fetch = rig.source.fetch

    def without_key(path: str, version: int | None = None) -> Fetched:
        fetched = real_fetch(path, version)
        return dataclasses.replace(fetched, data={"other": Secret("x")}) \
            if path == "secret/b" else fetched

    rig.source.fetch = without_key  # type: ignore[method-assign]
    rig.run_until(start + 11.0)
    assert rig.a.read_text() == "a=a2\n" and rig.b.read_text() == "b=b1\n"
    assert len(rig.signals()) == 1 and rig.commands() == []
    rig.source.fetch = real_fetch  # type: ignore[method-assign]
    rig.run_until(start + 40.0)
    assert rig.b.read_text() == "b=b2\n" and len(rig.commands()) == 1


def test_fatal_stops_the_app_with_the_template_error_and_writes_nothing(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path, b_on_error="fatal")
    start = rig.clock.now
    del rig.source.kv["secret/b"]
    rig.source.kv["secret/a"] = (2, "a2")
    rig.engine.notify("secret/b changed", [B])
    rig.engine.notify("secret/a changed", [A])
    rig.run_until(start + 11.0)
    [fatal] = [e for e in rig.posted if isinstance(e, events.Fatal)]
    assert isinstance(fatal.error, SecretNotFound) and fatal.error.exit_code == 78
    assert str(rig.b) in str(fatal.error) and "secret/b" in str(fatal.error)
    assert "error_on_refresh = fatal" in str(fatal.error)
    assert rig.a.read_text() == "a=a1\n" and rig.signals() == []
    fetches = len(rig.source.fetches)
    rig.run_until(start + 60.0)
    assert len(rig.source.fetches) == fetches  # exiting: no successor any more


def test_an_env_template_that_fails_still_fails_the_whole_successor(tmp_path: Path) -> None:
    from entrypoint.config.model import EnvTemplateSpec

    rig = make_rig(tmp_path)
    config = dataclasses.replace(rig.engine.config, env_template=[
        EnvTemplateSpec(name="B", contents="{{ secret('secret/b').key }}")])
    rig.engine.config = config
    rig.engine.render = Renderer(config, rig.engine.runtime)
    start = rig.clock.now
    del rig.source.kv["secret/b"]
    rig.source.kv["secret/a"] = (2, "a2")
    rig.engine.notify("secret/b changed", [B])
    rig.engine.notify("secret/a changed", [A])
    rig.run_until(start + 11.0)
    assert rig.a.read_text() == "a=a1\n" and rig.posted == []
    assert rig.engine.act_failures >= 1


def test_error_on_refresh_is_parsed_and_checked(tmp_path: Path) -> None:
    from entrypoint.config import tables
    from entrypoint.config.model import Raw
    from entrypoint.errors import ConfigError

    raw = Raw([{"destination": "x", "contents": "", "error_on_refresh": "fatal"}], "c.toml")
    [spec] = tables.templates(raw, tmp_path)
    assert spec.error_on_refresh == "fatal"
    with pytest.raises(ConfigError, match="error_on_refresh expects keep or fatal"):
        tables.templates(Raw([{"destination": "x", "contents": "",
                               "error_on_refresh": "ignore"}], "c.toml"), tmp_path)
    assert load({}, {"ENTRYPOINT_TEMPLATE_ERROR_ON_REFRESH": "fatal"}) \
        .template_error_on_refresh == "fatal"
