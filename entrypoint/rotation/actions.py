"""Decide what to do with the app when a new generation differs from the last one.

Pure: compares old and new outputs and returns the actions, so that "five changes, one
action" and "env changes always restart" are tested without processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint.config.model import OnChange


@dataclass(frozen=True)
class Plan:
    restart: bool = False
    signals: tuple[int, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    reasons: tuple[str, ...] = field(default=())

    @property
    def nothing(self) -> bool:
        return not (self.restart or self.signals or self.commands)


def decide(old_env: Mapping[str, str], new_env: Mapping[str, str],
           changed_files: Iterable[OnChange], reasons: Sequence[str]) -> Plan:
    """What one generation calls for; actions compose, each taken once.

    Anything that feeds the environment restarts: env cannot change inside a process.
    A restart replaces every signal: the new app reads the new files as it starts, so a
    signal would only reach the old one as it stops (or the new one for nothing).
    Commands are side processes, not the app: they run whether or not the app restarts.
    ``none`` adds nothing. Each distinct signal and command is taken once, in config order.
    """
    changes = list(changed_files)
    restart = dict(old_env) != dict(new_env) or any(c.action == "restart" for c in changes)
    signals: list[int] = []
    commands: list[tuple[str, ...]] = []
    for change in changes:
        if change.action == "signal" and change.signal is not None:
            if not restart and change.signal not in signals:
                signals.append(change.signal)
        elif change.action == "command" and change.command not in commands:
            commands.append(change.command)
    return Plan(restart=restart, signals=tuple(signals), commands=tuple(commands),
                reasons=tuple(reasons))


def changed_names(old_env: Mapping[str, str], new_env: Mapping[str, str]) -> list[str]:
    """Names (never values) of variables that differ, for the log line."""
    names = set(old_env) | set(new_env)
    return sorted(n for n in names if old_env.get(n) != new_env.get(n))
