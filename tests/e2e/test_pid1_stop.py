"""The stop sequence: stop signal, kill_timeout, SIGKILL; nothing of the app outlives it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.pid1 import Supervised, elapsed, fields, is_alive


def test_child_ignoring_sigterm_is_killed_after_kill_timeout(tmp_path: Path) -> None:
    """SIG_IGN on SIGTERM: SIGKILL after kill_timeout (not before), exit 137."""
    with Supervised(tmp_path, ["--kill-timeout", "1"], ["--ignore-term"]) as run:
        child = run.ready()
        since = time.monotonic()
        run.kill(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGKILL
        took = elapsed(since)
    assert 0.9 <= took < 5, took
    assert "child did not stop within 1s of SIGTERM; sending SIGKILL" in run.log()
    assert not is_alive(int(child["pid"]))


def test_second_sigterm_cuts_the_graceful_stop_short(tmp_path: Path) -> None:
    """With kill_timeout 30s, a second SIGTERM (or SIGINT) kills at once."""
    with Supervised(tmp_path, ["--kill-timeout", "30"], ["--stay"]) as run:
        run.ready()
        since = time.monotonic()
        run.kill(signal.SIGTERM)
        run.wait_line(f"signal {signal.SIGTERM}")
        run.kill(signal.SIGINT)
        assert run.wait() == 128 + signal.SIGKILL
        assert elapsed(since) < 5
    assert "received SIGINT again: killing the child now" in run.log()


def test_stop_kills_the_whole_group_when_it_ignores_sigterm(tmp_path: Path) -> None:
    """With signal_group, SIGKILL goes to the group: the worker does not outlive us."""
    with Supervised(tmp_path, ["--kill-timeout", "0.5"], ["--ignore-term", "--worker"]) as run:
        child = run.ready()
        worker = fields(run.wait_line("worker-ready"))
        run.kill(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGKILL
    assert not is_alive(int(child["pid"]))
    assert not is_alive(int(worker["pid"]))


def test_what_the_child_leaves_in_its_group_is_stopped_before_exit(tmp_path: Path) -> None:
    """The app exits 3 but its worker still runs: the worker gets the stop signal and is
    gone before the supervisor exits 3 (tini#180, dumb-init#212)."""
    with Supervised(tmp_path, ["--kill-timeout", "5"], ["--worker", "--exit", "3"]) as run:
        assert run.wait() == 3
        worker = fields(run.wait_line("worker-ready"))
        assert f"worker-signal {signal.SIGTERM}" in run.lines()
    assert not is_alive(int(worker["pid"]))
    assert "child exited code=3" in run.log()
    assert "stopping what is left of the child's process group" in run.log()


def test_graceful_child_stops_without_sigkill(tmp_path: Path) -> None:
    """A child that takes 0.3 s to exit on SIGTERM is waited for, not killed."""
    with Supervised(tmp_path, ["--kill-timeout", "5"], ["--sleep-on-term", "0.3"]) as run:
        run.ready()
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert "SIGKILL" not in run.log().replace("SIGKILL in", "")
