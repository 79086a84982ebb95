"""What rendering a successor's outputs gave, besides the actions: the file templates that
failed. Light on purpose (no Jinja2): the rotation engine imports it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from entrypoint.config.model import OnChange
from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey


@dataclass(frozen=True)
class OutputFailure:
    """A file template that could not be rendered after start; its file is left as is."""

    destination: Path
    error: EntrypointError
    # Paths that only failing templates read: they stay on their last good value.
    held: frozenset[SourceKey] = frozenset()


class Outcome(list[OnChange]):
    """The ``on_change`` actions to take (a list, as a plain render callback returns),
    and the file templates that failed in this successor."""

    def __init__(self, actions: list[OnChange] | None = None, *,
                 failed: tuple[OutputFailure, ...] = ()) -> None:
        super().__init__(actions or [])
        self.failed = failed


class FatalOutputError(Exception):
    """A template with ``error_on_refresh = "fatal"`` failed: nothing was written."""

    def __init__(self, destination: Path, error: EntrypointError) -> None:
        super().__init__(f"template {destination}: {error}")
        self.destination = destination
        self.error = error


def failures_of(actions: list[OnChange]) -> tuple[OutputFailure, ...]:
    return actions.failed if isinstance(actions, Outcome) else ()
