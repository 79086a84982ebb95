"""Exit status: the child's code, 128+N for a signal death, 126/127 when it cannot start,
and the error's code when resolution fails; SIGTERM before the start starts nothing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.pid1 import Supervised


@pytest.mark.parametrize("code", [0, 1, 2, 32, 64, 127, 254, 255])
def test_exits_with_the_childs_code(tmp_path: Path, code: int) -> None:
    """The app's exit code is passed through untouched."""
    with Supervised(tmp_path, child_args=["--exit", str(code)]) as run:
        assert run.wait() == code
    assert f"child exited code={code}" in run.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                    signal.SIGKILL, signal.SIGSEGV])
def test_exits_128_plus_n_when_the_child_dies_of_signal_n(tmp_path: Path, signum: int) -> None:
    """As sh does: a child killed by signal N gives 128+N (143 for SIGTERM)."""
    name = signal.Signals(signum).name
    with Supervised(tmp_path, child_args=["--die", name]) as run:
        assert run.wait() == 128 + signum
    assert f"child exited code={128 + signum} (killed by {name})" in run.log()


def test_command_not_found_is_127(tmp_path: Path) -> None:
    """A command missing from the app's PATH exits 127 and says so."""
    with Supervised(tmp_path, command=["no-such-command-xyz", "arg"]) as run:
        assert run.wait() == 127
    assert "no-such-command-xyz: command not found in the app's PATH" in run.log()


def test_missing_path_is_127(tmp_path: Path) -> None:
    with Supervised(tmp_path, command=[str(tmp_path / "missing")]) as run:
        assert run.wait() == 127
    assert f"{tmp_path / 'missing'}: no such file" in run.log()


def test_missing_interpreter_is_127(tmp_path: Path) -> None:
    """ENOENT from exec of an existing file means its #! interpreter is missing."""
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    with Supervised(tmp_path, command=[str(script)]) as run:
        assert run.wait() == 127
    assert "its interpreter (#! line) or loader does not exist" in run.log()


@pytest.mark.parametrize("kind", ["not-executable", "directory"])
def test_not_executable_is_126(tmp_path: Path, kind: str) -> None:
    """A file without x permission, or a directory, exits 126 with 'permission denied'."""
    target = tmp_path / "target"
    if kind == "directory":
        target.mkdir()
    else:
        target.write_text("#!/bin/sh\nexit 0\n")
        target.chmod(0o644)
    with Supervised(tmp_path, command=[str(target)]) as run:
        assert run.wait() == 126
    assert f"{target}: permission denied" in run.log()


def test_not_executable_on_path_is_126(tmp_path: Path) -> None:
    """Found on PATH but not executable: 126, as execvp and sh report it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tool").write_text("#!/bin/sh\n")
    prefix = ["env", f"PATH={bindir}:/usr/bin:/bin"]
    with Supervised(tmp_path, command=["tool"], prefix=prefix) as run:
        assert run.wait() == 126
    assert f"{bindir / 'tool'}: permission denied" in run.log()


def test_sigterm_before_run_starts_nothing(tmp_path: Path) -> None:
    """A SIGTERM between construction and run() is kept and ends the run with 143."""
    hold = tmp_path / "go"
    with Supervised(tmp_path, ["--hold-before-run", str(hold)]) as run:
        run.wait_line("constructed", run.marker)
        run.kill(signal.SIGTERM)
        hold.touch()
        assert run.wait() == 128 + signal.SIGTERM
    assert not run.lines()  # the child never ran
    assert "received SIGTERM before the app started; not starting it" in run.log()
    assert "shutdown" in run.lines(run.marker)  # prepare() is not waited for


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_during_resolution_starts_nothing(tmp_path: Path, signum: int) -> None:
    """While prepare() still runs (blocked on 'the network'), SIGTERM/SIGINT exit 128+N."""
    with Supervised(tmp_path, ["--hold-prepare", str(tmp_path / "never")]) as run:
        run.wait_line("preparing", run.marker)
        run.kill(signum)
        assert run.wait() == 128 + signum
    assert not run.lines()
    assert "shutdown" in run.lines(run.marker)


def test_hup_during_resolution_reaches_the_child(tmp_path: Path) -> None:
    """A signal other than TERM/INT that arrives before the start is delivered after it."""
    release = tmp_path / "release"
    with Supervised(tmp_path, ["--hold-prepare", str(release)]) as run:
        run.wait_line("preparing", run.marker)
        run.kill(signal.SIGUSR1)
        release.touch()
        run.ready()
        run.wait_line(f"signal {signal.SIGUSR1}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0


def test_resolution_error_exits_with_its_code(tmp_path: Path) -> None:
    """prepare() raising an EntrypointError: logged once, its exit code, no child."""
    with Supervised(tmp_path, ["--prepare-error"]) as run:
        assert run.wait() == 69
    assert "vault at http://vault:8200 did not answer in time" in run.log()
    assert not run.lines()


def test_fatal_event_stops_the_child_and_exits_with_its_code(tmp_path: Path) -> None:
    """Fatal(error): the child gets the stop signal, shutdown callbacks run, exit 69."""
    with Supervised(tmp_path) as run:
        run.ready()
        run.post(fatal="lease for database/creds/app expired and vault is down")
        assert run.wait() == 69
    assert run.lines()[-1] == f"signal {signal.SIGTERM}"
    assert "child stopped code=0" in run.log()
    assert "shutdown" in run.lines(run.marker)  # prepare() is not waited for


def test_no_command_is_127(tmp_path: Path) -> None:
    with Supervised(tmp_path, command=[]) as run:
        assert run.wait() == 127
    assert "no command to run" in run.log()

