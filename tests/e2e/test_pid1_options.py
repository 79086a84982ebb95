"""Options tini and dumb-init users expect (issue 19.5, 19.6), through the real command
line: a signal rewritten to nothing, exit statuses reported as success, and the
configuration errors (exit 78) that keep a promise from being accepted and then broken."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from entrypoint.config.model import load
from entrypoint.errors import ConfigError
from tests.helpers.cli import REPO, run_cli, start_cli, wait_until
from tests.helpers.pid1 import PRINT_SIGNALS


def test_rewrite_to_none_drops_the_signal(tmp_path: Path) -> None:
    """--rewrite-signal INT:none (dumb-init's -r 2:0) was refused; now SIGINT is dropped:
    the app never sees it and the entrypoint does not start stopping."""
    out, log = tmp_path / "out.txt", tmp_path / "ep.log"
    with log.open("wb") as err:
        proc = start_cli(["--control-socket", "", "--rewrite-signal",
                          "INT:none", "--", *PRINT_SIGNALS, "--out", str(out)],
                         cwd=REPO, stderr=err)
    try:
        wait_until(lambda: out.exists() and "ready" in out.read_text(), timeout=30,
                   what="the app to be ready")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGUSR1)  # a marker: SIGINT came first
        wait_until(lambda: f"signal {signal.SIGUSR1}" in out.read_text(), timeout=10,
                   what="the marker signal")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"signal {signal.SIGINT}" not in out.read_text().splitlines()
    assert "received SIGINT: dropped (rewrite_signal)" in log.read_text()


@pytest.mark.parametrize(("app", "flags", "code"), [
    ("import sys; sys.exit(143)", ["--success-exit-code", "143"], 0),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
     ["--success-exit-code", "143"], 0),  # killed by SIGTERM: 128+15 is remapped too
    ("import sys; sys.exit(3)", ["--success-exit-code", "143", "--success-exit-code", "3"], 0),
    ("import sys; sys.exit(4)", ["--success-exit-code", "143"], 4),  # others pass through
])
def test_success_exit_code_reports_listed_statuses_as_zero(app: str, flags: list[str],
                                                           code: int) -> None:
    """tini -e 143: a JVM that exits 143 on SIGTERM is not a failure to the orchestrator."""
    result = run_cli(["--control-socket", "", *flags, "--", sys.executable, "-c", app])
    assert result.returncode == code, result.stderr


def test_success_exit_code_from_a_variable() -> None:
    result = run_cli(["--", sys.executable, "-c", "import sys; sys.exit(143)"],
                     {"ENTRYPOINT_SUCCESS_EXIT_CODE": "1,143", "ENTRYPOINT_CONTROL_SOCKET": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({"ENTRYPOINT_SUCCESS_EXIT_CODE": "256"},
     "variable ENTRYPOINT_SUCCESS_EXIT_CODE: success_exit_code expects whole numbers from "
     "0 to 255, got '256'"),
    ({"ENTRYPOINT_SUCCESS_EXIT_CODE": "x"}, "got 'x'"),
    ({"ENTRYPOINT_SUCCESS_EXIT_CODE": "143", "ENTRYPOINT_MODE": "exec"},
     "success_exit_code needs mode = supervise"),
    ({"ENTRYPOINT_REWRITE_SIGNAL": "KILL:TERM"}, "SIGKILL"),
    ({"ENTRYPOINT_REWRITE_SIGNAL": "CHLD:none"}, "is never forwarded"),
    ({"ENTRYPOINT_REWRITE_SIGNAL": "INT"}, "FROM:TO such as TERM:QUIT or INT:none"),
    ({"ENTRYPOINT_REWRITE_SIGNAL": "INT:BOGUS"}, "expected a signal name"),
    ({"ENTRYPOINT_PASS_FDS": "2"}, "pass_fds expects whole numbers from 3"),
    ({"ENTRYPOINT_PARENT_DEATH_SIGNAL": "NOPE"}, "parent_death_signal"),
])
def test_bad_process_options_are_config_errors(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({}, env)
    assert named in str(caught.value)
    result = run_cli(["--", "true"], {**env, "ENTRYPOINT_CONTROL_SOCKET": ""})
    assert result.returncode == 78
    assert named in result.stderr and "Traceback" not in result.stderr


def test_pass_fds_must_be_open() -> None:
    """A descriptor the caller did not give us is a config error at start, not a surprise
    for the app."""
    result = run_cli(["--pass-fds", "77", "--", "true"], {"ENTRYPOINT_CONTROL_SOCKET": ""})
    assert result.returncode == 78
    assert "flag --pass-fds: pass_fds: descriptor 77 is not open" in result.stderr


def test_rewrite_to_none_in_the_config() -> None:
    config = load({}, {"ENTRYPOINT_REWRITE_SIGNAL": "INT:none,HUP:0,TERM:QUIT"})
    assert config.rewrite_signal == {signal.SIGINT: 0, signal.SIGHUP: 0,
                                     signal.SIGTERM: signal.SIGQUIT}
