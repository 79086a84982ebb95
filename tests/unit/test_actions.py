"""How ``on_change`` actions compose in one generation: ``decide()`` and ``post_plan()``."""

from __future__ import annotations

import logging
import signal

from entrypoint.config.model import OnChange
from entrypoint.process import events
from entrypoint.rotation.actions import Plan, decide
from entrypoint.rotation.successor import post_plan

OLD = {"DB_PASSWORD": "value-1"}
NEW = {"DB_PASSWORD": "value-2"}
RELOAD = OnChange.parse("command:nginx -s reload")
HUP = OnChange.parse("signal:SIGHUP")
NONE = OnChange.parse("none")


def test_env_change_and_a_command_file_restart_and_run_the_command() -> None:
    plan = decide(OLD, NEW, [RELOAD], ["poll"])
    assert plan == Plan(restart=True, commands=(("nginx", "-s", "reload"),),
                        reasons=("poll",))


def test_restart_on_change_and_a_command_file_restart_and_run_the_command() -> None:
    plan = decide(OLD, OLD, [OnChange.parse("restart"), RELOAD], [])
    assert plan.restart and plan.commands == (("nginx", "-s", "reload"),)


def test_env_change_and_a_signal_file_only_restart() -> None:
    """The new app reads the new file as it starts: a signal as well would be moot."""
    plan = decide(OLD, NEW, [HUP], [])
    assert plan.restart and plan.signals == () and plan.commands == ()


def test_signal_command_and_none_compose_without_a_restart() -> None:
    plan = decide(OLD, OLD, [NONE, HUP, RELOAD], [])
    assert plan == Plan(signals=(signal.SIGHUP,), commands=(("nginx", "-s", "reload"),))


def test_command_and_none_run_the_command_only() -> None:
    plan = decide(OLD, OLD, [RELOAD, NONE], [])
    assert not plan.restart and plan.signals == ()
    assert plan.commands == (("nginx", "-s", "reload"),)


def test_none_alone_is_nothing() -> None:
    assert decide(OLD, OLD, [NONE, NONE], []).nothing


def test_two_files_with_the_same_command_run_it_once() -> None:
    other = OnChange.parse("command:/bin/true")
    plan = decide(OLD, OLD, [RELOAD, other, OnChange.parse("command:nginx -s reload")], [])
    assert plan.commands == (("nginx", "-s", "reload"), ("/bin/true",))  # config order


def test_two_files_with_the_same_command_and_a_restart_run_it_once() -> None:
    plan = decide(OLD, NEW, [RELOAD, RELOAD], [])
    assert plan.restart and plan.commands == (("nginx", "-s", "reload"),)


def test_post_plan_posts_the_restart_then_the_command() -> None:
    posted: list[events.Event] = []
    plan = decide(OLD, NEW, [RELOAD, HUP], ["poll"])
    post_plan(plan, dict(NEW), "poll", ["DB_PASSWORD"], posted.append,
              logging.getLogger("test"), generation=3)
    assert [type(e) for e in posted] == [events.Restart, events.RunCommand]
    restart, command = posted
    assert isinstance(restart, events.Restart) and restart.env == NEW
    assert restart.generation == 3
    assert isinstance(command, events.RunCommand)
    assert tuple(command.argv) == ("nginx", "-s", "reload") and command.reason == "poll"


def test_post_plan_without_a_restart_signals_then_runs_commands() -> None:
    posted: list[events.Event] = []
    post_plan(decide(OLD, OLD, [RELOAD, HUP], []), dict(OLD), "poll", [], posted.append,
              logging.getLogger("test"))
    assert [type(e) for e in posted] == [events.SignalChild, events.RunCommand]
