"""Signal forwarding: what reaches the child, its process group, and what never does."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.pid1 import Supervised

ROUTINE = [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGWINCH, signal.SIGCONT]


@pytest.mark.parametrize("group", [True, False], ids=["signal_group", "child_only"])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_forwards_each_signal_to_the_child_or_its_group(tmp_path: Path, group: bool,
                                                        stop: int) -> None:
    """Every forwarded signal reaches the child; its group too only with signal_group.

    SIGTERM/SIGINT are forwarded too and start a shutdown; the child exits 0 on them.
    """
    args = [] if group else ["--no-signal-group"]
    with Supervised(tmp_path, args, ["--worker"]) as run:
        run.ready()
        run.wait_line("worker-ready")
        for signum in [*ROUTINE, stop]:
            run.kill(signum)
            run.wait_line(f"signal {signum}")
        assert run.wait() == 0
        if group:
            for signum in [*ROUTINE, stop]:
                run.wait_line(f"worker-signal {signum}")
        else:
            assert not [ln for ln in run.lines() if ln.startswith("worker-signal")]
    assert f"received {signal.Signals(stop).name}: stopping the child" in run.log()
    assert "forwarded SIGHUP" in run.log()


def test_never_forwards_sigchld_or_sigurg(tmp_path: Path) -> None:
    """SIGURG (Go preemption noise) and SIGCHLD stay with the supervisor."""
    with Supervised(tmp_path) as run:
        run.ready()
        run.kill(signal.SIGURG)
        run.kill(signal.SIGCHLD)
        run.kill(signal.SIGUSR1)  # a marker: once it arrives, the others would have too
        run.wait_line(f"signal {signal.SIGUSR1}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert f"signal {signal.SIGURG}" not in run.lines()
    assert f"signal {signal.SIGCHLD}" not in run.lines()


def test_rewrites_signals(tmp_path: Path) -> None:
    """rewrite_signal TERM->QUIT and HUP->0 (dropped), as dumb-init -r does."""
    with Supervised(tmp_path, ["--rewrite", "TERM:QUIT", "--rewrite", "HUP:0"],
                    ["--stay"]) as run:
        run.ready()
        run.kill(signal.SIGHUP)
        run.kill(signal.SIGUSR2)
        run.wait_line(f"signal {signal.SIGUSR2}")
        run.kill(signal.SIGTERM)
        run.wait_line(f"signal {signal.SIGQUIT}")
        run.kill(signal.SIGTERM)  # the second stop request kills at once
        assert run.wait() == 128 + signal.SIGKILL
    assert f"signal {signal.SIGHUP}" not in run.lines()
    assert f"signal {signal.SIGTERM}" not in run.lines()
    assert "stopping the child with SIGQUIT" in run.log()


def test_sigterm_sends_the_stop_signal(tmp_path: Path) -> None:
    """docker stop means stop: SIGTERM reaches the app as stop_signal (here SIGUSR1)."""
    with Supervised(tmp_path, ["--stop-signal", "USR1", "--kill-timeout", "0.5"],
                    ["--stay"]) as run:
        run.ready()
        run.kill(signal.SIGTERM)
        run.wait_line(f"signal {signal.SIGUSR1}")
        assert run.wait() == 128 + signal.SIGKILL


@pytest.mark.parametrize("signal_group", [True, False])
def test_child_starts_with_clean_mask_and_default_dispositions(
        tmp_path: Path, signal_group: bool) -> None:
    """A non-Python child (cat) shows what it inherited: nothing blocked, nothing ignored.

    The supervisor itself blocks nothing but ignores SIGPIPE (Python does) and anything
    its parent ignored, here SIGHUP and SIGUSR2 through the 'nohup'-like prefix.
    """
    prefix = ["python", "-c", "import os, signal, sys; "
              "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
              "signal.signal(signal.SIGUSR2, signal.SIG_IGN); "
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1}); "
              "os.execvp(sys.argv[1], sys.argv[1:])"]
    args = [] if signal_group else ["--no-signal-group"]
    with Supervised(tmp_path, args, command=["cat", "/proc/self/status"], prefix=prefix) as run:
        assert run.wait() == 0
    status = dict(line.split(":\t", 1) for line in run.stdout.read_text().splitlines()
                  if ":\t" in line)
    assert int(status["SigBlk"], 16) == 0
    # Signals 1-31; glibc's posix_spawn leaves its own internal signals (32, 33) ignored.
    assert int(status["SigIgn"], 16) & 0x7FFFFFFF == 0
