"""The Consul keys watched with blocking queries follow what the outputs read, generation
after generation, on a real Consul agent.

The blocking queries used to be started once, for the keys the first values read: a key
a template read only after an edit (or after another value changed its condition) was
read once and never watched, so its later changes never reached the app."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import backoff
from entrypoint.commands.run import Resident
from entrypoint.config.model import TemplateSpec
from entrypoint.plan.keys import SourceKey
from tests.helpers.residents import DEADLINE, Make, Posted, next_restart, quiet_config
from tests.realservers.consul_agent import ConsulAgent


def replace_text(file: Path, text: str) -> None:
    """At once (an edit in place could be rendered half written with wait_min 0)."""
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text)
    tmp.replace(file)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE}s"
        time.sleep(0.02)


def consul_watching(resident: Resident) -> set[SourceKey]:
    """The keys with a blocking-query thread alive in ``resident``."""
    assert resident.rotation is not None
    watcher = resident.rotation.sources.get("consul")
    return set(getattr(watcher, "watching", ()))


def watch_threads(key: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"consul-watch:{key}"]


def rendering(consul_agent: ConsulAgent, resident_for: Make, tmp_path: Path, text: str
              ) -> tuple[Resident, Path, Path]:
    """A resident, prepared, whose one template (``text``) renders to app.conf: the
    resident, the template and its output."""
    template, out = tmp_path / "app.tmpl", tmp_path / "app.conf"
    template.write_text(text)
    config = quiet_config(template=[TemplateSpec(destination=out, source=template)])
    resident = resident_for(config, consul_agent.env())
    resident.prepare()
    return resident, template, out


@pytest.mark.parametrize("first", ["{{ consul('config/a') }}\n", "nothing read\n"],
                         ids=["another-consul-key-at-start", "no-consul-at-start"])
def test_a_consul_key_first_read_after_the_start_is_watched(
        consul_agent: ConsulAgent, tmp_path: Path, resident_for: Make, posted: Posted,
        first: str) -> None:
    consul_agent.put("config/a", "a1")
    consul_agent.put("config/b", "b1")
    _, template, out = rendering(consul_agent, resident_for, tmp_path, first)
    at_start = 1 if "consul" in first else 0
    consul_agent.wait_for_blocked_queries(at_start)
    replace_text(template, "{{ consul('config/b') }}\n")
    next_restart(posted)
    assert out.read_text() == "b1\n"
    consul_agent.wait_for_blocked_queries(at_start + 1)
    consul_agent.put("config/b", "b2")
    assert "consul:config/b changed" in next_restart(posted).reason
    wait_for(lambda: out.read_text() == "b2\n", "b2 rendered")


def test_a_consul_key_no_longer_read_is_no_longer_watched(
        consul_agent: ConsulAgent, tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """A template flipping between two keys: the key left ends its query at once (its
    thread and connection with it), and the one taken up again is read afresh and watched
    from that read, so a change made while it was not watched reaches the app at once."""
    consul_agent.put("config/a", "a1")
    consul_agent.put("config/b", "b1")
    resident, template, out = rendering(consul_agent, resident_for, tmp_path,
                                        "{{ consul('config/a') }}\n")
    replace_text(template, "{{ consul('config/b') }}\n")
    next_restart(posted)
    wait_for(lambda: not watch_threads("config/a"), "config/a's watch thread ended")
    assert consul_watching(resident) == {SourceKey("consul", "config/b")}
    # Counted once config/b's query is parked (its connection made): Consul keeps the
    # side of config/a's query that was cut until its wait ends, hence two.
    consul_agent.wait_for_blocked_queries(2)
    steady = consul_agent.connections_from_here()
    consul_agent.put("config/a", "a2")  # not watched now: nothing reaches the app
    for _ in range(2):
        replace_text(template, "{{ consul('config/a') }}\n")
        # Read afresh: not the value carried since it was left (a1), then a2 once its
        # query answered, in two restarts.
        assert "consul:config/a" not in next_restart(posted).reason
        assert out.read_text() == "a2\n"
        replace_text(template, "{{ consul('config/b') }}\n")
        next_restart(posted)
        wait_for(lambda: out.read_text() == "b1\n", "b1 rendered")
        wait_for(lambda: not watch_threads("config/a"), "config/a's watch thread ended")
        assert consul_watching(resident) == {SourceKey("consul", "config/b")}
        wait_for(lambda: consul_agent.connections_from_here() <= steady,
                 "no connection left to consul")
    assert len(watch_threads("config/b")) == 1


def test_a_consul_key_a_changed_condition_reads_is_watched(
        consul_agent: ConsulAgent, tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """No edit at all: config/mode's change turns the template's condition, and the next
    render reads config/b for the first time; then config/b's own change reaches the app,
    and config/a, read no more, is no longer watched."""
    consul_agent.put("config/mode", "old")
    consul_agent.put("config/a", "a1")
    consul_agent.put("config/b", "b1")
    resident, _, out = rendering(
        consul_agent, resident_for, tmp_path,
        "{% if consul('config/mode') == 'new' %}{{ consul('config/b') }}"
        "{% else %}{{ consul('config/a') }}{% endif %}\n")
    assert out.read_text() == "a1\n"
    consul_agent.wait_for_blocked_queries(2)
    consul_agent.put("config/mode", "new")
    assert "consul:config/mode changed" in next_restart(posted).reason
    assert out.read_text() == "b1\n"
    consul_agent.put("config/b", "b2")  # from its read in that render: no race with its query
    assert "consul:config/b changed" in next_restart(posted).reason
    wait_for(lambda: out.read_text() == "b2\n", "b2 rendered")
    mode, b = SourceKey("consul", "config/mode"), SourceKey("consul", "config/b")
    wait_for(lambda: consul_watching(resident) == {mode, b}, "config/mode and config/b watched")


def test_a_consul_key_a_failing_template_did_not_find_is_rendered_once_made(
        consul_agent: ConsulAgent, tmp_path: Path, resident_for: Make, posted: Posted,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The template is edited to read config/new, not there yet: it fails and keeps its
    last good file, and config/new is watched from the read that found nothing, so
    putting it renders the template at once (as consul-template waits for a key). It used
    to wait for the retry's backoff, put an hour away here: only the watch can do it."""
    monkeypatch.setattr(backoff, "RUNNING_BASE", 3600.0)
    monkeypatch.setattr(backoff, "RUNNING_CAP", 3600.0)
    consul_agent.put("config/a", "a1")
    resident, template, out = rendering(consul_agent, resident_for, tmp_path,
                                        "{{ consul('config/a') }}\n")
    assert resident.rotation is not None
    resident.rotation.engine.rng = lambda: 0.99
    new = SourceKey("consul", "config/new")
    replace_text(template, "{{ consul('config/new') }}\n")
    wait_for(lambda: new in consul_watching(resident), "config/new, not found, watched")
    assert out.read_text() == "a1\n"  # its last good file
    consul_agent.put("config/new", "n1")
    assert "consul:config/new changed" in next_restart(posted).reason
    assert out.read_text() == "n1\n"
    wait_for(lambda: consul_watching(resident) == {new}, "config/new watched, config/a not")
