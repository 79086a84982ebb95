"""What other components ask of the supervisor: plain, frozen data posted to its queue.

The rotation engine, file watchers and timers run in their own threads; they never touch
the child. They ``Supervisor.post()`` one of these and the main loop acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from entrypoint.errors import EntrypointError


@dataclass(frozen=True)
class Restart:
    """Stop the child (after the splay) and start it again with ``env``."""

    # The environment holds secret values: keep it out of every repr and log line.
    env: Mapping[str, str] = field(repr=False)
    reason: str
    # Which successor of the engine this is: the supervisor reports it back once a child
    # runs on it, so that only the leases this successor replaced are revoked then.
    generation: int = 0


@dataclass(frozen=True)
class SignalChild:
    """Send ``signum`` to the child (or its process group), after the splay."""

    signum: int
    reason: str


@dataclass(frozen=True)
class RunCommand:
    """Run ``argv`` as a side process (not the child) with the child's environment."""

    argv: Sequence[str]
    reason: str


@dataclass(frozen=True)
class Fatal:
    """Stop the child, run the shutdown callbacks and exit with ``error.exit_code``."""

    error: EntrypointError


Event = Restart | SignalChild | RunCommand | Fatal

# How the engine hands an event to the supervisor (``Supervisor.post``).
Post = Callable[[Event], None]
