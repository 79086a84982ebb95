"""Turning the rotation engine's loop on the test thread, for the in-process tests: the
engine's own thread is never started, so each turn is deterministic."""

from __future__ import annotations

from collections.abc import Callable

from entrypoint.rotation.engine import Engine
from tests.helpers.clock import Clock


def step(engine: Engine) -> None:
    """One turn of the engine's loop: what is in its inbox, then what is due."""
    while not engine.inbox.empty():
        engine._handle(engine.inbox.get_nowait())  # type: ignore[arg-type]
    engine._run_due()


def run_until(clock: Clock, engine: Engine, end: float, dt: float = 0.25,
              stop: Callable[[], bool] = lambda: False) -> None:
    """Move the fake clock by ``dt`` and turn the loop, until ``end`` or ``stop()``."""
    while clock.now < end and not stop():
        clock.now += dt
        step(engine)
