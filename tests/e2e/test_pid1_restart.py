"""Restart, signal and command primitives for the rotation engine."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers.pid1 import Supervised, is_alive


def started(run: Supervised) -> list[str]:
    return [ln for ln in run.lines(run.marker) if ln.startswith("started ")]


def test_restart_stops_then_starts_with_the_new_env(tmp_path: Path) -> None:
    """Restart: the old child gets SIGTERM and is gone before the new one starts."""
    with Supervised(tmp_path) as run:
        old = run.ready()
        run.post(restart={"GENERATION": "2", "DB_PASSWORD": "pw-Zq81-never-logged"},
                 reason="database/creds/app rotated")
        new = run.ready("2")
        assert new["pid"] != old["pid"]
        assert not is_alive(int(old["pid"]))
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert run.lines().index(f"signal {signal.SIGTERM}") < run.lines().index(
        next(ln for ln in run.lines() if " gen=2 " in ln))
    # A stop we started is not the app dying: it is "stopped", and we carry on.
    assert "restarting: database/creds/app rotated" in run.log()
    assert "child stopped code=0" in run.log()
    assert "child exited" not in run.log()
    assert [ln.split()[-1] for ln in started(run)] == ["live_children=1"] * 2
    assert "pw-Zq81-never-logged" not in run.log()  # the env holds secrets: never logged


def test_restart_uses_the_configured_stop_signal(tmp_path: Path) -> None:
    """stop_signal QUIT on restart; a child that does not exit on it is killed in time."""
    with Supervised(tmp_path, ["--stop-signal", "QUIT", "--kill-timeout", "0.5"]) as run:
        run.ready()
        run.post(restart={"GENERATION": "2"}, reason="rotation")
        run.ready("2")
        run.kill(signal.SIGTERM)  # "stop" means stop_signal for the new child too
        assert run.wait() == 128 + signal.SIGKILL
    assert run.lines().count(f"signal {signal.SIGQUIT}") == 2
    assert f"signal {signal.SIGTERM}" not in run.lines()
    assert "child did not stop within 0.5s of SIGQUIT; sending SIGKILL" in run.log()


def test_signal_during_restart_reaches_the_new_child(tmp_path: Path) -> None:
    """SIGUSR1 while the old child is being stopped is held and given to the new one."""
    with Supervised(tmp_path, ["--kill-timeout", "1"], ["--ignore-term"]) as run:
        run.ready()
        run.post(restart={"GENERATION": "2"}, reason="rotation")
        run.wait_log("restarting: rotation")
        run.kill(signal.SIGUSR1)
        run.ready("2")
        run.wait_line(f"signal {signal.SIGUSR1}")
        # The new child installs its handlers before it prints "ready", so its own lines
        # may show the signal first: which child got it is the supervisor's log to say.
        log = run.log()
        second_start = log.index("child started", log.index("child started") + 1)
        assert log.index("forwarded SIGUSR1") > second_start, log
        assert log.count("forwarded SIGUSR1") == 1, log
        assert run.lines().count(f"signal {signal.SIGUSR1}") == 1
        run.kill(signal.SIGTERM)
        run.kill(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGKILL
    assert [ln.split()[-1] for ln in started(run)] == ["live_children=1"] * 2


def test_sigterm_during_restart_exits_without_starting_again(tmp_path: Path) -> None:
    """SIGTERM while a restart stops the old child: no new child, exit 143."""
    with Supervised(tmp_path, ["--kill-timeout", "1"], ["--ignore-term"]) as run:
        old = run.ready()
        run.post(restart={"GENERATION": "2"}, reason="rotation")
        run.wait_log("restarting: rotation")
        run.kill(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGTERM
    assert not [ln for ln in run.lines() if " gen=2 " in ln]
    assert not is_alive(int(old["pid"]))
    assert "received SIGTERM during a restart: the child will not be started again" in run.log()
    assert run.lines(run.marker)[-1] == "shutdown"


def test_restarts_arriving_together_start_the_newest_env_once(tmp_path: Path) -> None:
    """Two changes in a row: one stop, and the child starts straight on the newest env."""
    with Supervised(tmp_path) as run:
        run.ready()
        with open(run.control, "a", encoding="utf-8") as control:  # one write, two events
            control.write('{"restart": {"GENERATION": "2"}, "reason": "first"}\n'
                          '{"restart": {"GENERATION": "3"}, "reason": "second"}\n')
        run.ready("3")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert not [ln for ln in run.lines() if " gen=2 " in ln]
    assert len(started(run)) == 2


def test_restart_waits_for_the_splay(tmp_path: Path) -> None:
    """With splay, the restart is announced and happens after a random delay."""
    with Supervised(tmp_path, ["--splay", "0.3"]) as run:
        run.ready()
        run.post(restart={"GENERATION": "2"}, reason="rotation")
        run.ready("2")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert "(splay): rotation" in run.log()


def test_signal_child_event(tmp_path: Path) -> None:
    """SignalChild(SIGHUP): sent to the running child, with its reason logged."""
    with Supervised(tmp_path, ["--splay", "0.2"]) as run:
        run.ready()
        run.post(signal="HUP", reason="templates/app.conf changed")
        run.wait_line(f"signal {signal.SIGHUP}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert "signalled child SIGHUP: templates/app.conf changed" in run.log()


def test_run_command_event(tmp_path: Path) -> None:
    """RunCommand: a side process with the child's env; its exit is logged; a failing or
    missing command is logged and leaves the app alone."""
    result = tmp_path / "result"
    with Supervised(tmp_path) as run:
        run.ready()
        run.post(command=["sh", "-c", f'echo "gen=$GENERATION" > {result}'], reason="reload")
        run.wait_log("command sh exited code=0")
        run.post(command=["false"], reason="check")
        run.wait_log("command false exited code=1")
        run.post(command=["no-such-reload-tool"], reason="reload")
        run.wait_log("could not start")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    assert result.read_text() == "gen=1\n"
    assert "command no-such-reload-tool" not in run.lines()


def test_signal_to_a_child_still_starting_waits_for_its_handler(tmp_path: Path) -> None:
    """SIGHUP right after the start would kill an app that has not installed its handler
    yet (dumb-init#136): it is held until the child catches it, then delivered."""
    with Supervised(tmp_path, child_args=["--late-handlers", "0.5"]) as run:
        run.wait_line(lambda ln: ln.startswith("started "), run.marker)
        run.kill(signal.SIGHUP)
        run.ready()
        run.wait_line(f"signal {signal.SIGHUP}")
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
