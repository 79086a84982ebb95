"""A template's render has a deadline and a size cap (issue 14, item 7, the template part).

Before: a template looping 10^10 times hung ``render`` (and, at rotation, the thread that
keeps the app's credentials fresh); one printing in a loop grew the entrypoint's memory
without bound. Each setting is given here by another of its three names (flag,
``ENTRYPOINT_*`` variable, TOML key).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint.errors import TemplateError
from entrypoint.plan.resolve import Generation
from entrypoint.render import sandbox
from entrypoint.render.limits import TimeUp
from entrypoint.sources.base import Fetched, Source, to_secrets
from entrypoint.sources.registry import Sources
from tests.helpers.cli import REPO, run_cli, start_cli, wait_until
from tests.helpers.journal import events, wait_for

ENDLESS = "a\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_by_default_an_endless_loop_ends_and_a_flood_is_capped(tmp_path: Path) -> None:
    """The attack with no setting given: the defaults (10 s, 16 MiB) stop both."""
    src = tmp_path / "loop.j2"
    src.write_text(ENDLESS)
    proc = run_cli(["render", "--template", f"{src}:{tmp_path}/out"], timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "took longer than template_timeout (10s)" in proc.stderr
    src.write_text("{% for i in range(2000) %}{{ 'x' * 10000 }}{% endfor %}")  # 20 MB
    proc = run_cli(["render", "--template", f"{src}:{tmp_path}/out"], timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "renders more than template_max_bytes (16777216 bytes)" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_endless_loop_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    src = tmp_path / "loop.j2"
    src.write_text(ENDLESS)
    began = time.monotonic()
    proc = run_cli(["render", "--template", f"{src}:{tmp_path}/out"],
                   {"ENTRYPOINT_TEMPLATE_TIMEOUT": "1s"}, timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "loop.j2:2: took longer than template_timeout (1s) to render" in proc.stderr
    assert time.monotonic() - began < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", [
    "{% for i in range(2000) %}{{ 'x' * 10000 }}{% endfor %}",  # 20 MB, chunk by chunk
    "{{ 'x' * 2000000 }}",                                      # one repetition
    "{{ 3 ** 10000000 }}",                                      # one power
    "{{ '%2000000s' % 'x' }}",                                  # one printf width
    "{{ '{:>2000000}'.format('x') }}",                          # one format width
    "{{ 'x'.center(2000000) }}",                                # one padding
    "{{ 'x' | center(2000000) }}",
    "{{ 'a\nb' | indent(2000000) }}",
])
def test_output_past_the_cap_is_refused(tmp_path: Path, text: str) -> None:
    src = tmp_path / "big.j2"
    src.write_text(text)
    config = tmp_path / "app.toml"
    config.write_text(f'template_max_bytes = 1000000\n[[template]]\nsource = "{src}"\n'
                      f'destination = "{tmp_path}/out"\n')
    proc = run_cli(["render", "--config", str(config)], timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "renders more than template_max_bytes (1000000 bytes)" in proc.stderr
    assert not (tmp_path / "out").exists()


class Slow(Source):
    """A source whose every read takes ``delay`` seconds (a slow Vault)."""

    name = "vault"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        time.sleep(self.delay)  # the slowness under test, not a wait for a race
        return Fetched(data=to_secrets({"v": json.dumps(path)}), kind="local")

    def describe(self, path: str) -> str:
        return "a slow source"

    def close(self) -> None:
        pass


def _render(text: str, tmp_path: Path, timeout: float, delay: float = 0.0) -> str:
    generation = Generation(Sources({"vault": lambda: Slow(delay)}, {}))
    where = sandbox.Located("t.j2", is_file=True, folder=tmp_path)
    scope = sandbox.Scope(generation, {}, (tmp_path,), text, timeout=timeout)
    env = sandbox.make_environment()
    return sandbox.render(sandbox.compile_template(env, text, where), text, where, scope)


def test_time_spent_fetching_is_not_counted(tmp_path: Path) -> None:
    """Fetches have their own timeouts; a slow Vault is not a slow template."""
    text = "{{ secret('kv/a').v }} {{ secret('kv/b').v }}"
    assert _render(text, tmp_path, timeout=0.5, delay=0.4) == '"kv/a" "kv/b"'


def test_the_deadline_never_fires_after_the_render(tmp_path: Path) -> None:
    """Renders ending just before, at and after their deadline: each either returns or
    fails with the timeout error; none lets the interruption escape or arrive later."""
    text = "{% for i in range(N) %}{{ i }}{% endfor %}"
    outcomes = {"done": 0, "timeout": 0}
    for n in range(300):
        # 200 to 87,000 turns, geometrically: dense around the deadline on a fast machine
        # and a slow one alike (a turn takes 0.1 to 1 us).
        source = text.replace("N", str(int(200 * 1.0205 ** n)))
        try:
            _render(source, tmp_path, timeout=0.002)
            outcomes["done"] += 1
        except TemplateError as exc:
            assert "took longer than template_timeout" in exc.message
            outcomes["timeout"] += 1
        except TimeUp:
            pytest.fail("the interruption escaped the render")
        # Bytecode after the render: a late interruption would be raised here.
        total = sum(range(20_000))
        assert total == 199_990_000
    assert outcomes["done"] and outcomes["timeout"], outcomes


def test_an_interruption_dropped_by_a_gc_callback_is_raised_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython reports and drops an exception raised in a garbage-collector callback. A
    deadline that lands there must not let the render run on: it is raised again. The
    callback holds the thread until the first interruption arrives in it."""
    import gc

    dropped: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_value))
    held = {"done": False}

    def in_render() -> bool:
        frame = sys._getframe()
        while frame is not None and frame.f_code is not sandbox._generate.__code__:
            frame = frame.f_back  # type: ignore[assignment]
        return frame is not None

    def hold_until_interrupted(phase: str, info: dict[str, int]) -> None:
        if phase != "start" or held["done"] or not in_render():
            return
        held["done"] = True
        until = time.monotonic() + 5
        while time.monotonic() < until:  # the TimeUp is raised in here, then dropped
            pass

    threshold = gc.get_threshold()
    gc.set_threshold(1)  # a collection at the template's first allocations
    gc.callbacks.append(hold_until_interrupted)
    try:
        # Long enough (10^7 turns, seconds) to be still going when the interruption is
        # raised again; [[j]] makes two lists at once, so the collector runs.
        text = ("{% for i in range(100000) %}{% for j in range(100) %}{% set x = [[j]] %}"
                "{% endfor %}{% endfor %}done")
        with pytest.raises(TemplateError) as info:
            _render(text, tmp_path, timeout=0.05)
    finally:
        gc.callbacks.remove(hold_until_interrupted)
        gc.set_threshold(*threshold)
    assert held["done"], "the collector never ran during the render"
    assert any(isinstance(e, TimeUp) for e in dropped), dropped  # the case was made
    assert "took longer than template_timeout" in info.value.message


def test_an_endless_template_at_rotation_leaves_the_app_running(
        tmp_path: Path, popens: list[subprocess.Popen[bytes]]) -> None:
    """The template is edited into an endless loop while the app runs: the rotation
    thread is not hung, the app keeps running, and a fixed template is picked up."""
    src, dest = tmp_path / "t.j2", tmp_path / "out/app.conf"
    src.write_text("first\n")
    journal, log = tmp_path / "journal", tmp_path / "entrypoint.log"
    with log.open("wb") as err:
        proc = start_cli(
            ["--template", f"{src}:{dest}", "--template-timeout", "1s",
             "--wait-min", "100ms", "--wait-max", "1s", "--kill-timeout", "5s", "--",
             sys.executable, str(REPO / "tests/helpers/app_probe.py"), str(journal)],
            {"ENTRYPOINT_CONTROL_SOCKET": ""}, stderr=err)
    popens.append(proc)
    wait_for(journal, "start")
    src.write_text(ENDLESS)
    wait_until(lambda: "took longer than template_timeout (1s)" in log.read_text(),
               timeout=30, what="the endless template refused at rotation")
    assert proc.poll() is None and events(journal, "stop") == []
    assert dest.read_text() == "first\n"
    src.write_text("second\n")
    wait_for(journal, "start", 2, timeout=60)  # after the backoff
    assert dest.read_text() == "second\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
