"""Reaping: every zombie, including orphaned grandchildren, as PID 1 or as subreaper."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import wait_until
from tests.helpers.pid1 import Supervised, children_of, is_alive, zombies_of


def orphans_reaped(run: Supervised, supervisor_pid: int) -> list[int]:
    """Wait until all 100 orphans were reaped; their pids as the child saw them."""
    orphans = [int(p) for p in run.wait_line("orphans").split()[1].split(",")]
    assert len(orphans) == 100
    wait_until(lambda: run.log().count("DEBUG reaped orphan") == 100, timeout=10,
               what="100 'reaped orphan' debug lines")
    assert not zombies_of(supervisor_pid)
    return orphans


def test_reaps_100_orphans_as_subreaper(tmp_path: Path) -> None:
    """Not PID 1: registered as child subreaper, it adopts and reaps 100 orphans."""
    with Supervised(tmp_path, child_args=["--orphans", "100"]) as run:
        run.ready()
        orphans = orphans_reaped(run, run.proc.pid)
        assert not any(is_alive(p) for p in orphans)
        # Each was adopted by the supervisor (not by the host's PID 1) and reaped quietly.
        assert {int(ln.split("pid=")[1].split()[0]) for ln in run.log().splitlines()
                if "reaped orphan" in ln} == set(orphans)
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert "registered as child subreaper" in run.log()


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare(1) to run as PID 1 "
                                              "in a new PID namespace")
def test_reaps_100_orphans_as_pid_1(tmp_path: Path) -> None:
    """As PID 1 of a new PID namespace (a container's view): same result, no subreaper."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    with Supervised(tmp_path, child_args=["--orphans", "100"], prefix=prefix) as run:
        child = run.ready()
        assert child["ppid"] == "1"
        found = wait_until(lambda: children_of(run.proc.pid), what="the supervisor under unshare")
        assert isinstance(found, list)
        pid1 = found[0]
        orphans = orphans_reaped(run, pid1)  # pids inside the namespace
        assert {int(ln.split("pid=")[1].split()[0]) for ln in run.log().splitlines()
                if "reaped orphan" in ln} == set(orphans)
        os.kill(pid1, signal.SIGTERM)  # from outside the namespace, as `docker stop` does
        assert run.wait() == 0
    assert "subreaper" not in run.log()
