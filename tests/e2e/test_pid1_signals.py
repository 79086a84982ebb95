"""Signal forwarding: what reaches the child, its process group, and what never does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from entrypoint.process import signals
from tests.e2e.test_pid1_reap import can_unshare
from tests.helpers.cli import wait_until
from tests.helpers.pid1 import Supervised, children_of, is_alive, stat_of

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
            if group and signum != stop:
                # Before the next: the kernel delivers a lower-numbered pending signal
                # first, and SIGTERM would end the worker before it saw SIGCONT.
                run.wait_line(f"worker-signal {signum}")
        assert run.wait() == 0
        if group:
            run.wait_line(f"worker-signal {stop}")
        else:
            assert not [ln for ln in run.lines() if ln.startswith("worker-signal")]
    assert f"received {signal.Signals(stop).name}: stopping the child" in run.log()
    assert "forwarded SIGHUP" in run.log()


# Every catchable signal but SIGTERM/SIGINT (they stop) and those with a meaning of their
# own, spelled out here rather than taken from the code under test.
EVERY_OTHER = sorted(signal.valid_signals() - {
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ,
    signal.SIGTERM, signal.SIGINT})


@pytest.mark.parametrize("group", [True, False], ids=["signal_group", "child_only"])
def test_every_other_signal_reaches_the_app_and_never_kills_the_entrypoint(
        tmp_path: Path, group: bool) -> None:
    """issue 19.1: SIGALRM, SIGSEGV, SIGTTIN, SIGRTMIN+3, ... sent to the entrypoint used
    to kill it with their default action (or stop it), orphaning the app. Each one now
    reaches the app (and its group with signal_group) while the entrypoint lives on."""
    args = [] if group else ["--no-signal-group"]
    with Supervised(tmp_path, args, ["--all", "--worker"]) as run:
        run.ready()
        run.wait_line("worker-ready")
        for signum in EVERY_OTHER:
            run.kill(signum)
            run.wait_line(f"signal {signum}")
            if group:
                run.wait_line(f"worker-signal {signum}")
            assert run.proc.poll() is None, f"{signals.name(signum)} ended the entrypoint"
            assert stat_of(run.proc.pid)[0] != "T", f"{signals.name(signum)} stopped it"
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    if not group:
        assert not [ln for ln in run.lines() if ln.startswith("worker-signal")]


def test_never_forwards_sigchld_sigpipe_or_sigxfsz(tmp_path: Path) -> None:
    """SIGCHLD means "reap"; SIGPIPE and SIGXFSZ are about the entrypoint's own writes."""
    with Supervised(tmp_path, [], ["--all"]) as run:
        run.ready()
        for signum in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
            run.kill(signum)
        run.kill(signal.SIGUSR1)  # a marker: once it arrives, the others would have too
        run.wait_line(f"signal {signal.SIGUSR1}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    for signum in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
        assert f"signal {signum}" not in run.lines()


def test_rewritten_job_control_signal_takes_effect(tmp_path: Path) -> None:
    """issue 19.4: --rewrite-signal TTIN:TERM was accepted and did nothing; SIGTSTP stopped
    only the entrypoint. Job-control signals are forwarded like the others (rewritten
    when asked), and the entrypoint never stops itself."""
    with Supervised(tmp_path, ["--rewrite", "TTIN:USR2"], ["--all", "--stay"]) as run:
        run.ready()
        run.kill(signal.SIGTTIN)
        run.wait_line(f"signal {signal.SIGUSR2}")
        run.kill(signal.SIGTSTP)
        run.wait_line(f"signal {signal.SIGTSTP}")
        assert stat_of(run.proc.pid)[0] != "T"
        run.kill(signal.SIGTERM)
        run.wait_line(f"signal {signal.SIGTERM}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGKILL
    assert f"signal {signal.SIGTTIN}" not in run.lines()
    assert "forwarded SIGTTIN as SIGUSR2" in run.log()


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare(1) to run as PID 1 "
                                              "in a new PID namespace")
def test_as_pid1_every_other_signal_reaches_the_app(tmp_path: Path) -> None:
    """The same as PID 1, where a signal at its default disposition would be ignored."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    with Supervised(tmp_path, [], ["--all"], prefix=prefix) as run:
        run.ready()
        (pid1,) = wait_until(lambda: children_of(run.proc.pid), what="the supervisor")
        try:
            for signum in EVERY_OTHER:
                os.kill(pid1, signum)
                run.wait_line(f"signal {signum}")
            os.kill(pid1, signal.SIGTERM)
            assert run.wait() == 0
        finally:
            if is_alive(pid1):  # the namespace ends with its PID 1, app included
                os.kill(pid1, signal.SIGKILL)


def test_rewrites_signals(tmp_path: Path) -> None:
    """rewrite_signal TERM->QUIT and HUP->none (dropped), as dumb-init -r does."""
    with Supervised(tmp_path, ["--rewrite", "TERM:QUIT", "--rewrite", "HUP:none"],
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
    # All 64, glibc's own 32 and 33 included: its posix_spawn left those two ignored
    # (issue 19.3).
    assert int(status["SigIgn"], 16) == 0


def test_a_real_fault_still_kills_the_entrypoint(tmp_path: Path) -> None:
    """SIGSEGV sent with kill() is passed on, but a real fault of the entrypoint must not
    turn into a handler that returns to the faulting instruction forever: it is blocked,
    so the kernel applies its default action and the entrypoint dies of it."""
    with Supervised(tmp_path) as run:
        run.ready()
        run.post(crash="SEGV")
        assert run.wait() == -signal.SIGSEGV
